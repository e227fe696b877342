"""One pretraining run, end to end: render, train, score on held-out scenes, write weights + record."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from wsss_kit.engine.seeding import seed_everything

from ..machine import machine_info
from .classifier import build_classifier, classifier_loss, evaluate_classifier
from .contrastive import (
    build_clip,
    clamp_logit_scale,
    clip_loss,
    evaluate_clip,
    locked_clip_loss,
    tag_probe,
)
from .lit import cutout_views, load_world_vit_into, pooled_features
from .loop import adamw, run_steps
from .pool import HELD_OUT, render_pool
from .recipes import Recipe
from .record import save_half_state, write_record

__all__ = ["pretrain"]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pretrain(recipe: Recipe, *, seed: int = 0, out: str | Path, record: str | Path, threads: int | None = 2,
             workers: int = 2, device: str = "auto", held_out: tuple[tuple[str, int], ...] = HELD_OUT) -> dict[str, Any]:
    """Pretrain ``recipe.model`` from ``seed``; write the float16 weights to ``out`` and the JSON record
    to ``record`` (both atomically); return the record.

    The run is a function of ``(recipe, seed)``: the scene pool, captions, batch order, augmentation
    and initialisation all follow ``seed`` (on a CPU with the same thread count, bit for bit).
    """
    recipe.check()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"pretrain {recipe.model}: --seed must be a non-negative integer, got {seed!r}")
    if recipe.model not in ("clip", "resnet", "vit"):
        raise ValueError(f"pretrain: unknown model {recipe.model!r}; expected clip, resnet or vit")
    if threads is not None:
        torch.set_num_threads(int(threads))
    dev = _device(device)
    start = time.perf_counter()

    is_clip = recipe.model == "clip"
    epochs = math.ceil(recipe.steps * min(recipe.batch_size, recipe.images) / recipe.images) if is_clip else 0
    pool = render_pool("pretrain", recipe.images, seed, captions_per_image=epochs, workers=workers,
                       with_masks=is_clip and recipe.cutouts)
    tests = [render_pool(split, recipe.eval_images, s, workers=workers, desc=f"held-out {split} (seed {s})")
             for split, s in held_out]
    render_s = time.perf_counter() - start

    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    progress: list[dict[str, Any]] = []

    def probe(step: int) -> None:
        score = evaluate(tests[0])
        progress.append({"step": step, "mAP_classes": score["mAP_classes"], "AP_water": score["AP_water"]})
        tqdm.write(f"pretrain {recipe.model}: step {step}: held-out {progress[-1]['mAP_classes']:.4f} mAP over the "
                   f"classes, {progress[-1]['AP_water']:.4f} AP water")

    feature_s = 0.0
    bias = None
    if is_clip:
        model = build_clip(recipe, dev)
        if recipe.image_init:
            from wsss_kit.weights import create_timm_model

            vit = create_timm_model(recipe.image_init, weights=f"released:{recipe.image_init}")
            load_world_vit_into(model, vit.state_dict())
        probe_head = tag_probe(model).to(dev) if recipe.tag_loss > 0 else None
        if recipe.lock_image:
            for name, p in model.model.visual.named_parameters():
                p.requires_grad_(name == "proj")
            begun = time.perf_counter()
            model.eval()
            views = [pooled_features(model, pool.images), pooled_features(model, pool.images, flip=True)]
            cutouts = None
            if recipe.cutouts:
                assert pool.masks is not None
                cut = cutout_views(pool.images, pool.masks, pool.classes, pool.attributes, generator)
                cutouts = [(pooled_features(model, cut.only), cut.only_tags),
                           (pooled_features(model, cut.removed), cut.removed_tags)]
                pool.masks = None  # read once, for the views
            feature_s = time.perf_counter() - begun
            bias = torch.nn.Parameter(torch.full((), -5.0, device=dev)) if recipe.prompt_loss > 0 else None
            loss = locked_clip_loss(model, pool, views, generator, recipe.prompt_loss, bias, cutouts)
        else:
            loss = clip_loss(model, pool, probe_head, recipe.tag_loss)
        named = list(model.model.named_parameters())
        if recipe.lock_image and bias is not None:
            named.append(("prompt_bias", bias))
        if probe_head is not None:
            named += [(f"tag_probe.{n}", p) for n, p in probe_head.named_parameters()]
        optimizer = adamw(named, recipe, betas=(0.9, 0.98), eps=1e-6)
        state_of = model.model.state_dict

        def evaluate(test: Any) -> dict[str, Any]:
            return evaluate_clip(model, test)
    else:
        model = build_classifier(recipe).to(dev)
        optimizer = adamw(model.named_parameters(), recipe)
        loss, state_of = classifier_loss(model, pool), model.state_dict

        def evaluate(test: Any) -> dict[str, Any]:
            return evaluate_classifier(model, test, dev)
    curve = run_steps(model, optimizer, pool, recipe, loss, generator, dev,
                      after_step=(lambda: clamp_logit_scale(model)) if is_clip else None, probe=probe,
                      use_images=not recipe.lock_image)
    scores = [evaluate(t) for t in tests]
    progress.append({"step": recipe.steps, "mAP_classes": scores[0]["mAP_classes"], "AP_water": scores[0]["AP_water"]})
    state = state_of()
    weights = save_half_state(state, out)
    result = {
        "model": recipe.model,
        "architecture": recipe.architecture,
        "released_name": recipe.weights_name,
        "recipe": asdict(recipe),
        "seed": seed,
        "steps": recipe.steps,
        "images": recipe.images,
        "batch_size": recipe.batch_size,
        "captions_per_image": epochs,
        "threads": torch.get_num_threads(),
        "device": str(dev),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "render_time_s": round(render_s, 1),
        "feature_time_s": round(feature_s, 1),
        "train_time_s": round(curve.seconds, 1),
        "loss": curve.summary(),
        "held_out": {f"{split}_seed{s}": score for (split, s), score in zip(held_out, scores)},
        "held_out_progress": {"set": f"{held_out[0][0]}_seed{held_out[0][1]}", "points": progress},
        "parameters": sum(v.numel() for v in state.values() if v.is_floating_point()),
        "machine": machine_info(),
        "command": f"python -m benchmarks pretrain {recipe.model} --seed {seed}",
    }
    return write_record(record, result, weights)
