"""wsss_kit from Python: run a whole pipeline, then read its results and artifacts.

A notebook-style script (each ``# %%`` block is a cell in VS Code, PyCharm or Jupytext). It runs the
embedded ``synthetic`` dataset with a small config (no download) in about two minutes on a CPU (125 s of
CPU time with one thread, measured; 1.2 GB peak memory). The networks train briefly, so the scores are
far below the demo's (held-out mIoU: CAM 27.6, pseudo masks 36.9, retrained head 16.5; ``wsss demo``
trains longer):

    python examples/python_api.py                 # writes ./wsss_python_api/
    python examples/python_api.py --quick DIR     # a toy-size run in seconds (what the test runs)

docs/python_api.md explains each step.
"""

# %% The config: a plain dict, the same keys as a run file (docs/user_guide.md, "Run configs")
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from wsss_kit.data import load_cams, read_mask
from wsss_kit.engine import read_log
from wsss_kit.inference import predict_multiscale
from wsss_kit.pipeline import RunContext, check_run_config, format_report, run_pipeline
from wsss_kit.pipeline.stages import trained_head


def small_config(quick: bool = False) -> dict[str, Any]:
    """The demo pipeline at a size that runs in about two minutes (``quick``: seconds, barely trained)."""
    n_train, n_eval, size = (12, 6, 64) if quick else (96, 32, 96)
    cam_steps, head_steps = (3, 2) if quick else (120, 80)
    return {
        "seed": 0,
        "device": "cpu",
        "data": {
            "train": {"type": "datasets/synthetic", "split": "train", "num_images": n_train, "image_size": size},
            "eval": {"type": "datasets/synthetic", "split": "val", "num_images": n_eval, "image_size": size},
        },
        "cam": {
            "model": {"type": "cams/resnet_cam", "backbone": "resnet18", "freeze_stem": False, "fixed_bn": False,
                      "dilate_last_stage": True, "upsample": "image"},
            "augment": {"crop_size": size, "scale_range": [0.8, 1.25], "flip": True},
            "train": {"steps": cam_steps, "batch_size": 8, "lr": 0.05, "log_every": 5},
            "infer": {"scales": [1.0], "flip": True},
        },
        "seeds": {"bg_threshold": "auto"},
        "refiner": {"type": "refiners/dense_crf", "params": "psa", "bg_threshold": "auto", "workers": 0},
        "head": {
            "model": {"type": "heads/smp", "arch": "Unet", "encoder_name": "resnet18"},
            "loss": {"type": "losses/balanced_ce"},
            "augment": {"crop_size": size, "flip": True},
            "train": {"steps": head_steps, "batch_size": 8, "lr": 1.0e-3, "optimizer": "adamw", "log_every": 5},
            "infer": {"scales": [1.0], "flip": True},
        },
        "eval": {"pictures": 4},
        # TensorBoard is on whenever the tensorboard package is installed; pictures every 40 steps
        "logging": {"images": 2, "images_every": 40},
    }


# %% Where to run: the command line's run directory (a notebook takes the defaults)
parser = argparse.ArgumentParser(description="run a small pipeline from Python and read its results")
parser.add_argument("run_dir", nargs="?", default="wsss_python_api", help="the run directory")
parser.add_argument("--quick", action="store_true", help="toy size: seconds, barely trained")
args = parser.parse_args([] if "ipykernel" in sys.modules else None)  # a notebook kernel has its own argv
run_dir = Path(args.run_dir)
cfg = small_config(args.quick)

# %% Check the whole config first: every problem at once, with its config path; nothing is written
check_run_config(cfg)

# %% Run it. Stage records come back (the manifest); a rerun skips complete stages and items
stages = run_pipeline(cfg, run_dir)
print(format_report(stages, refiner="dense_crf"))

# %% Scores: each stage's record holds per-split mIoU and per-class IoU (background first)
cams = stages["cams"]
print(f"CAM: best background threshold {cams['train']['best_threshold']} on data.train, "
      f"held-out mIoU {100 * cams['eval']['miou']:.1f}")
classes = ("background",) + tuple(RunContext(cfg, run_dir).class_names)
head_iou = stages["eval"]["eval"]["iou"]
print("head, held-out IoU per class:", {c: round(100 * v, 1) for c, v in zip(classes, head_iou) if v is not None})
# results.json holds the same records; results.md the table, the per-class table and the picture list
assert json.loads((run_dir / "results.json").read_text())["eval"]["eval"]["miou"] == stages["eval"]["eval"]["miou"]

# %% Artifacts are plain files: CAM archives, palette PNG masks, the training logs
name = sorted(p.stem for p in (run_dir / "cams" / "eval").glob("*.npz"))[0]
num_classes = len(classes) - 1
cam = load_cams(run_dir / "cams" / "eval" / f"{name}.npz", num_classes)  # float (C, H, W) in [0, 1]
seeds = read_mask(run_dir / "seeds" / "eval" / f"{name}.png", num_classes)  # int64 (H, W), 255 = ignore
pseudo = read_mask(run_dir / "pseudo_masks" / "eval" / f"{name}.png", num_classes)
prediction = read_mask(run_dir / "predictions" / "eval" / f"{name}.png", num_classes)
print(f"{name}: CAMs {tuple(cam.shape)}, seed classes {sorted(set(seeds.flatten().tolist()))}, "
      f"pseudo-mask classes {sorted(set(pseudo.flatten().tolist()))}, "
      f"predicted classes {sorted(set(prediction.flatten().tolist()))}")
log = read_log(run_dir / "train_cam" / "log.csv")  # one dict per logged step: step, loss, lr, seconds
print(f"CAM training: loss {log[0]['loss']:.3f} at step {log[0]['step']} -> {log[-1]['loss']:.3f} "
      f"at step {log[-1]['step']}")
pictures = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.png")
                  if p.parent.name == "pictures" or p.name == "loss_curves.png")
print("pictures:", ", ".join(pictures))
print("TensorBoard:", f"tensorboard --logdir {run_dir}" if (run_dir / "train_cam" / "tensorboard").is_dir()
      else "off (pip install tensorboard)")

# %% The trained head is an ordinary nn.Module: predict any image tensor (B, 3, H, W) in [0, 1]
ctx = RunContext(cfg, run_dir)
model, where = trained_head(ctx)  # built from head.model, weights from train_head/model.pt
image = ctx.dataset("eval")[0]["image"][None]
probs = predict_multiscale(model, image.to(ctx.device), scales=(1.0, 1.5), flip=True)  # (1, C + 1, H, W)
print(f"head from {where}: multi-scale prediction {tuple(probs.shape)}, "
      f"classes {torch.unique(probs.argmax(1)).tolist()}")

# %% Change an inference setting: the stage whose settings changed must be restarted explicitly
cfg["head"]["infer"]["flip"] = False
stages = run_pipeline(cfg, run_dir, restart="eval")  # trains nothing: only eval runs again
print(f"held-out mIoU without flip: {100 * stages['eval']['eval']['miou']:.1f}")
