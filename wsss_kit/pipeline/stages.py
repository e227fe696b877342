"""The pipeline stages. Each reads the previous stages' files in the run directory and writes its own.

    train_cam → cams → seeds → pseudo_masks → train_head → eval

Inference stages skip items whose output file exists (resume) and handle only this process's shard.
A stage returns a dict recorded in the manifest, or ``None`` when other shards are still pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import build, check_keys, is_node
from ..data.image_io import save_mask_png
from ..data.transforms import build_augment
from ..engine import TrainConfig, seed_everything, train
from ..errors import ConfigError
from ..weights import load_state_dict, load_weights_into
from .artifacts import MaskTargetDataset, load_cams
from .cam_export import export_cams, seed_from_cam_file
from .context import SPLITS, RunContext
from .evaluation import evaluate_cams, evaluate_masks
from .items import all_exist, item_names, same_size_batches


def _train_config(ctx: RunContext, section: str) -> TrainConfig:
    cfg = dict(ctx.get(section))
    cfg.setdefault("seed", ctx.seed)
    cfg.setdefault("device", str(ctx.device))
    return TrainConfig.from_dict(cfg, where=section)


def _load_model(ctx: RunContext, node_key: str, weights: Path, **extra: Any) -> torch.nn.Module:
    model = build(ctx.get(node_key), node_key, **extra)
    load_weights_into(model, load_state_dict(weights), source=f"weights file {weights}")
    return model.to(ctx.device).eval()


def _pending(ctx: RunContext, split: str, folder: str, suffix: str) -> tuple[Any, list[str], Path, list[int]]:
    """``(dataset, names, output folder, indices of this shard without an output file yet)``."""
    ds = ctx.dataset(split)
    names = item_names(ds)
    out = ctx.path(folder, split)
    todo = [i for i in ctx.items(ds) if not (out / f"{names[i]}{suffix}").exists()]
    return ds, names, out, todo


# --------------------------------------------------------------------------- train_cam
def train_cam(ctx: RunContext) -> dict[str, Any]:
    ds = ctx.dataset("train", augment=ctx.get("cam.augment", None))
    config = _train_config(ctx, "cam.train")
    seed_everything(config.seed)  # the model's random initialisation is part of the run
    model = build(ctx.get("cam.model"), "cam.model", num_classes=ctx.num_classes)
    result = train(model, ds, config, ctx.path("train_cam"), desc="train CAM")
    return {"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1)}


# --------------------------------------------------------------------------- cams
def cam_infer_settings(ctx: RunContext) -> tuple[tuple[float, ...], bool, int]:
    """``cam.infer`` as ``(scales, flip, batch_size)``."""
    infer = dict(ctx.get("cam.infer", {}) or {})
    check_keys(infer, ("scales", "flip", "batch_size"), "cam.infer")
    try:
        scales = tuple(float(s) for s in infer.get("scales", (1.0,)))
        batch_size = int(infer.get("batch_size", 1))
    except (TypeError, ValueError):
        raise ConfigError(f"cam.infer: scales must be a list of numbers and batch_size an integer, got "
                          f"{infer.get('scales')!r} and {infer.get('batch_size')!r}") from None
    if not scales or any(not s > 0 for s in scales) or batch_size < 1:
        raise ConfigError(f"cam.infer: scales must be positive numbers and batch_size >= 1, got "
                          f"{list(scales)} and {batch_size}")
    return scales, bool(infer.get("flip", False)), batch_size


def cams(ctx: RunContext) -> dict[str, Any] | None:
    scales, flip, batch_size = cam_infer_settings(ctx)
    model = None
    complete = True
    for split in SPLITS:
        ds, names, out, todo = _pending(ctx, split, "cams", ".npz")
        if todo and model is None:
            model = _load_model(ctx, "cam.model", ctx.path("train_cam", "model.pt"), num_classes=ctx.num_classes)
        export_cams(model, ds, todo, out, scales=scales, flip=flip, batch_size=batch_size, device=ctx.device,
                    desc=f"CAMs [{split}]", where=f"data.{split}")
        complete &= all_exist(out, names, ".npz")
    if not complete:
        return None
    return {split: evaluate_cams(ctx, split) for split in SPLITS}


# --------------------------------------------------------------------------- seeds
def bg_threshold(ctx: RunContext) -> float:
    """``seeds.bg_threshold``; ``auto`` takes the best threshold of the CAM sweep on ``data.train``."""
    value = ctx.get("seeds.bg_threshold", "auto")
    if value != "auto":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"seeds.bg_threshold must be a number or 'auto', got {value!r}") from None
    sweep = ctx.manifest.info("cams").get("train") or {}
    if sweep.get("best_threshold") is None:
        raise ConfigError("seeds.bg_threshold: 'auto' needs ground-truth masks on data.train to pick the "
                          "threshold; this dataset has none, so set a number (e.g. 0.15)")
    return float(sweep["best_threshold"])


def seeds(ctx: RunContext) -> dict[str, Any] | None:
    check_keys(ctx.get("seeds", {}) or {}, ("bg_threshold",), "seeds")
    threshold = bg_threshold(ctx)
    palette = ctx.reference.palette
    complete = True
    for split in SPLITS:
        _, names, out, todo = _pending(ctx, split, "seeds", ".png")
        for i in tqdm(todo, desc=f"seeds [{split}]", unit="img"):
            seed_from_cam_file(ctx.path("cams", split, f"{names[i]}.npz"), out / f"{names[i]}.png",
                               ctx.num_classes, threshold, palette)
        complete &= all_exist(out, names, ".png")
    if not complete:
        return None
    result = {split: evaluate_masks(ctx, split, ctx.path("seeds", split)) for split in SPLITS}
    result["bg_threshold"] = threshold
    return result


# --------------------------------------------------------------------------- pseudo_masks
def _refiner(ctx: RunContext) -> Any:
    node = ctx.get("refiner")
    if not is_node(node):
        raise ConfigError("refiner must be a refiner node like {type: refiners/dense_crf}")
    node = dict(node)
    if node.get("bg_threshold") == "auto":
        node["bg_threshold"] = bg_threshold(ctx)
    return build(node, "refiner")


def pseudo_masks(ctx: RunContext) -> dict[str, Any] | None:
    opts = dict(ctx.get("pseudo_masks", {}) or {})
    check_keys(opts, ("batch_size",), "pseudo_masks")
    refiner = _refiner(ctx)
    palette = ctx.reference.palette
    complete = True
    for split in SPLITS:
        ds, names, out, todo = _pending(ctx, split, "pseudo_masks", ".png")
        bar = tqdm(total=len(todo), desc=f"pseudo masks [{split}]", unit="img")
        for batch in same_size_batches(ds, todo, int(opts.get("batch_size", 8))):
            images = torch.stack([s["image"] for s in batch])
            labels = torch.stack([s["labels"] for s in batch])
            cam = torch.stack([load_cams(ctx.path("cams", split, f"{s['name']}.npz"), ctx.num_classes)
                               for s in batch])
            refined = refiner.refine(images, cam, labels)
            masks = refined.argmax(1) if refined.is_floating_point() else refined.long()
            for s, m in zip(batch, masks):
                save_mask_png(out / f"{s['name']}.png", m, palette)
            bar.update(len(batch))
        bar.close()
        complete &= all_exist(out, names, ".png")
    if not complete:
        return None
    return {split: evaluate_masks(ctx, split, ctx.path("pseudo_masks", split)) for split in SPLITS}


# --------------------------------------------------------------------------- train_head
def train_head(ctx: RunContext) -> dict[str, Any]:
    augment = build_augment(ctx.get("head.augment", None))
    ds = MaskTargetDataset(ctx.dataset("train"), ctx.path("pseudo_masks", "train"), augment=augment)
    config = _train_config(ctx, "head.train")
    seed_everything(config.seed)
    model = build(ctx.get("head.model"), "head.model", num_classes=ctx.num_classes + 1)
    loss_fn = build(ctx.get("head.loss"), "head.loss")

    def step(m: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": loss_fn(m(batch["image"]), batch["target"])}

    result = train(model, ds, config, ctx.path("train_head"), step_fn=step, desc="train head")
    return {"steps": result.steps, "final_loss": result.final_loss, "seconds": round(result.seconds, 1)}


# --------------------------------------------------------------------------- eval
def predict(model: torch.nn.Module, images: torch.Tensor, scales: Iterable[float], flip: bool) -> torch.Tensor:
    """Average softmax over scales (and horizontal flips): ``(B, 3, H, W)`` → ``(B, K, H, W)``."""
    h, w = images.shape[-2:]
    total = None
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        views = [(x, False)] + ([(x.flip(-1), True)] if flip else [])
        for view, flipped in views:
            logits = model(view)
            logits = logits.flip(-1) if flipped else logits
            prob = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False).softmax(1)
            total = prob if total is None else total + prob
    return total


def evaluate_head(ctx: RunContext) -> dict[str, Any] | None:
    infer = dict(ctx.get("head.infer", {}) or {})
    check_keys(infer, ("scales", "flip"), "head.infer")
    check_keys(ctx.get("eval", {}) or {}, ("pictures",), "eval")
    scales = tuple(float(s) for s in infer.get("scales", (1.0,)))
    model = _load_model(ctx, "head.model", ctx.path("train_head", "model.pt"), num_classes=ctx.num_classes + 1)
    palette = ctx.reference.palette
    ds, names, out, todo = _pending(ctx, "eval", "predictions", ".png")
    for i in tqdm(todo, desc="predict [eval]", unit="img"):
        path = out / f"{names[i]}.png"
        with torch.no_grad():
            prob = predict(model, ds[i]["image"][None].to(ctx.device), scales, bool(infer.get("flip", False)))
        save_mask_png(path, prob.argmax(1)[0], palette)
    if not all_exist(out, names, ".png"):
        return None
    return {"eval": evaluate_masks(ctx, "eval", out)}


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any] | None]] = {
    "train_cam": train_cam,
    "cams": cams,
    "seeds": seeds,
    "pseudo_masks": pseudo_masks,
    "train_head": train_head,
    "eval": evaluate_head,
}

__all__ = ["STAGE_FUNCTIONS", "bg_threshold", "cam_infer_settings", "predict"]
