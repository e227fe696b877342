"""Scoring stage outputs (CAM files, mask PNGs) against a split's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from ..data.image_io import read_mask
from ..interfaces import IGNORE_INDEX
from ..metrics import ConfusionMatrix, ThresholdSweep
from .artifacts import load_cams
from .context import RunContext


def _ground_truth(ctx: RunContext, split: str, desc: str) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, mask)`` of every item of ``split``, streamed (a split's masks may not fit in memory)."""
    ds = ctx.dataset(split)
    for i in tqdm(range(len(ds)), desc=desc, unit="img", leave=False):
        sample = ds[i]
        yield sample["name"], torch.as_tensor(sample["mask"])


def _has_ground_truth(ctx: RunContext, split: str) -> bool:
    """False for a split whose masks are all ignore (e.g. VOC test): stops at the first mask with
    a labelled pixel, so it reads one item for a split that has ground truth."""
    ds = ctx.dataset(split)
    return any(not bool((torch.as_tensor(ds[i]["mask"]) == IGNORE_INDEX).all()) for i in range(len(ds)))


def _iou_list(iou: torch.Tensor) -> list[float | None]:
    return [None if torch.isnan(v) else round(float(v), 6) for v in iou]


def evaluate_cams(ctx: RunContext, split: str) -> dict[str, Any]:
    """Background-threshold sweep of the CAM files of ``split``: best threshold and its mIoU."""
    if not _has_ground_truth(ctx, split):
        return {"miou": None, "best_threshold": None}
    sweep = ThresholdSweep(ctx.num_classes)
    for name, mask in _ground_truth(ctx, split, f"score CAMs [{split}]"):
        cam = load_cams(ctx.path("cams", split, f"{name}.npz"), ctx.num_classes)
        sweep.update(cam[None], mask[None])
    threshold, miou = sweep.best()
    iou = sweep.ious()[sweep.index_of(threshold)]
    return {"miou": float(miou), "iou": _iou_list(iou), "best_threshold": round(threshold, 4)}


def evaluate_masks(ctx: RunContext, split: str, folder: Path) -> dict[str, Any]:
    """mIoU of the PNG masks in ``folder`` against the ground truth of ``split``."""
    if not _has_ground_truth(ctx, split):
        return {"miou": None}
    cm = ConfusionMatrix(ctx.num_classes + 1)
    for name, mask in _ground_truth(ctx, split, f"score {folder.parent.name} [{split}]"):
        pred = read_mask(folder / f"{name}.png", ctx.num_classes, expected_size=tuple(mask.shape))
        pred = torch.as_tensor(pred, dtype=torch.int64)
        # An ignore value in a prediction (e.g. uncertain seeds) counts as background.
        pred = torch.where(pred == IGNORE_INDEX, torch.zeros_like(pred), pred)
        cm.update(pred[None], mask[None])
    result = cm.compute()
    return {"miou": float(result["miou"]), "iou": _iou_list(result["iou"])}
