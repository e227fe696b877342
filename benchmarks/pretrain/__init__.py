"""``python -m benchmarks pretrain {clip,resnet,vit}``: the embedded world's pretrained foundations.

Each command rebuilds one shipped file of ``wsss_kit/pretrained/`` from a seed, with the recipe of
:data:`~.recipes.RECIPES` (override any size with the options), and writes its record
``benchmarks/results/pretrain_<model>.json`` (recipe, timings, loss curve, held-out scores, size,
SHA-256), the source of docs/embedded_models.md's model cards:

- ``clip``: ``wsss-synthetic-clip`` trained contrastively on captioned scenes; scored by zero-shot
  multi-label AP of ``"a photo of a {class}."`` and ``"a photo of water."``;
- ``resnet`` / ``vit``: ``wsss_world_resnet50`` / ``wsss_world_vit`` trained as multi-label classifiers
  of the scene tags; scored by their head's AP over the five classes and water.
"""

from __future__ import annotations

import argparse
import sys

from .recipes import MODELS, RECIPES, default_record, default_weights

__all__ = ["HELP", "add_arguments", "run"]

HELP = "pretrain the embedded world's foundations (tiny CLIP, ResNet, ViT) from a seed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pretrain`` sub-command's options (defaults: the shipped recipe)."""
    p.add_argument("model", choices=MODELS, help="which foundation to train")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes, captions, order and init (default 0)")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    p.add_argument("--images", type=int, help="scenes rendered from the pretraining split (default: the recipe's)")
    p.add_argument("--batch-size", type=int, help="images per step (default: the recipe's)")
    p.add_argument("--lr", type=float, help="peak AdamW learning rate (default: the recipe's)")
    p.add_argument("--eval-images", type=int, help="held-out scenes per held-out set (default: the recipe's)")
    p.add_argument("--eval-every", type=int, help="also score the first held-out set every N steps (0: only at "
                                                  "the end; default: the recipe's)")
    p.add_argument("--tag-loss", type=float, help="CLIP: weight of the auxiliary scene-tag loss (0: contrastive "
                   "only; default: the recipe's)")
    p.add_argument("--prompt-loss", type=float, help="CLIP: weight of the sigmoid loss of each image against a short "
                   "prompt per scene tag (0: off; default: the recipe's)")
    p.add_argument("--cutouts", choices=("on", "off"), help="CLIP: also train the tag loss on cut-out views (one "
                   "class on black; the scene with it blacked out) (default: the recipe's)")
    p.add_argument("--from-scratch", action="store_true", help="CLIP: train both towers from random weights "
                   "(no world-ViT image tower, nothing locked) instead of the shipped locked-image recipe")
    p.add_argument("--out", help="weights file (default: wsss_kit/pretrained/<name>.pt, the shipped file)")
    p.add_argument("--record", help="JSON record (default: benchmarks/results/pretrain_<model>.json)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when there is one), 'cpu', 'cuda'...")


def run(args: argparse.Namespace) -> int:
    """Run one pretraining; the exit code."""
    from .runner import pretrain

    recipe = RECIPES[args.model].replace(steps=args.steps, images=args.images, batch_size=args.batch_size,
                                         lr=args.lr, eval_images=args.eval_images,
                                         eval_every=args.eval_every, tag_loss=getattr(args, "tag_loss", None),
                                         prompt_loss=getattr(args, "prompt_loss", None),
                                         cutouts=None if getattr(args, "cutouts", None) is None else args.cutouts == "on")
    if getattr(args, "from_scratch", False):
        if args.model != "clip":
            print(f"python -m benchmarks pretrain: error: --from-scratch is a CLIP option (got {args.model})",
                  file=sys.stderr)
            return 2
        recipe = recipe.replace(image_init="", lock_image=False, prompt_loss=0.0, cutouts=False)
    try:
        recipe.check()
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"pretrain {args.model}: --threads must be >= 1, got {args.threads}")
        out = args.out or default_weights(recipe)
        record = args.record or default_record(recipe)
        result = pretrain(recipe, seed=args.seed, out=out, record=record, threads=args.threads,
                          workers=args.workers, device=args.device)
    except (ValueError, FloatingPointError) as exc:
        print(f"python -m benchmarks pretrain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written (rerun the same command)", file=sys.stderr)
        return 130
    for name, score in result["held_out"].items():
        print(f"{name}: mAP over the 5 classes {score['mAP_classes']:.4f}, AP water {score['AP_water']:.4f}")
    print(f"loss {result['loss']['first_moving_average']:.4f} -> {result['loss']['last_moving_average']:.4f}; "
          f"{result['loss']['seconds_per_step']} s/step; {result['wall_time_s']} s in all")
    print(f"written: {out} ({result['file_size_bytes']} bytes, sha256 {result['sha256'][:16]}...), {record}")
    return 0
