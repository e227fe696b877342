"""Scoring stage outputs (CAM files, mask PNGs) against a split's ground truth.

The dataset-level functions (:func:`has_ground_truth`, :func:`sweep_cam_files`,
:func:`score_mask_files`) need only a dataset and a folder, so ``wsss cam`` uses them too; the
``evaluate_*`` functions apply them to a run directory.

Under ``torch.distributed`` (``across_ranks=True``, what the pipeline and ``wsss cam`` pass) each
process scores the items ``rank, rank + world, ...`` and the integer confusion matrices are summed
over the processes, so every process gets exactly the one-process result (each item is counted
once) in ``1 / world`` of the time. Every process must then call the function: it is a collective.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from ..data.artifacts import load_cams, read_mask_artifact
from ..engine.distributed import get_rank, get_world_size
from ..interfaces import IGNORE_INDEX, WSSSDataset
from ..metrics import ConfusionMatrix, ThresholdSweep
from ..progress import Progress
from .context import RunContext


def _ground_truth(ds: WSSSDataset, desc: str, across_ranks: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, mask (H, W))`` of every item of ``ds`` (only this rank's ``rank::world`` share with
    ``across_ranks``), streamed (a split's masks may not fit in memory)."""
    rank, world = (get_rank(), get_world_size()) if across_ranks else (0, 1)
    items = range(rank, len(ds), world)
    for i in Progress(len(items), desc, enabled=rank == 0, leave=False).wrap(items):  # one per run: rank 0's
        sample = ds[i]
        yield sample["name"], torch.as_tensor(sample["mask"])


def has_ground_truth(ds: WSSSDataset) -> bool:
    """False for a split whose masks are all ignore (e.g. VOC test): stops at the first mask with
    a labelled pixel, so it reads one item for a split that has ground truth."""
    return any(not bool((torch.as_tensor(ds[i]["mask"]) == IGNORE_INDEX).all()) for i in range(len(ds)))


def _iou_list(iou: torch.Tensor) -> list[float | None]:
    return [None if torch.isnan(v) else round(float(v), 6) for v in iou]


def sweep_cam_files(ds: WSSSDataset, cam_dir: Path, num_classes: int, desc: str = "score CAMs", *,
                    across_ranks: bool = False) -> dict[str, Any]:
    """Background-threshold sweep of ``cam_dir/<name>.npz`` against the masks of ``ds``:
    ``{"miou", "iou" (per class, background first), "best_threshold"}`` (``None``s without ground truth).
    ``across_ranks``: split the items over the processes and sum their matrices (a collective)."""
    if not has_ground_truth(ds):
        return {"miou": None, "best_threshold": None}
    sweep = ThresholdSweep(num_classes)
    for name, mask in _ground_truth(ds, desc, across_ranks):
        cam = load_cams(cam_dir / f"{name}.npz", num_classes)
        sweep.update(cam[None], mask[None])
    if across_ranks:
        sweep.all_reduce()
    threshold, miou = sweep.best()
    iou = sweep.ious()[sweep.index_of(threshold)]
    return {"miou": float(miou), "iou": _iou_list(iou), "best_threshold": round(threshold, 4)}


def score_mask_files(ds: WSSSDataset, folder: Path, num_classes: int, desc: str = "score masks", *,
                     across_ranks: bool = False) -> dict[str, Any]:
    """mIoU of the PNG masks ``folder/<name>.png`` against the masks of ``ds``: ``{"miou", "iou"}``
    (``{"miou": None}`` without ground truth). An ignore value in a prediction counts as background.
    ``across_ranks``: split the items over the processes and sum their matrices (a collective)."""
    if not has_ground_truth(ds):
        return {"miou": None}
    cm = ConfusionMatrix(num_classes + 1)
    for name, mask in _ground_truth(ds, desc, across_ranks):
        size = (mask.shape[-2], mask.shape[-1])  # ground-truth masks are (H, W)
        pred = torch.as_tensor(read_mask_artifact(folder / f"{name}.png", num_classes, expected_size=size),
                               dtype=torch.int64)
        # An ignore value in a prediction (e.g. uncertain seeds) counts as background.
        pred = torch.where(pred == IGNORE_INDEX, torch.zeros_like(pred), pred)
        cm.update(pred[None], mask[None])
    if across_ranks:
        cm.all_reduce()
    result = cm.compute()
    return {"miou": float(result["miou"]), "iou": _iou_list(result["iou"])}


def evaluate_cams(ctx: RunContext, split: str) -> dict[str, Any]:
    """Background-threshold sweep of the CAM files of ``split``: best threshold and its mIoU
    (split over the processes under torch.distributed; every process must call it)."""
    return sweep_cam_files(ctx.dataset(split), ctx.path("cams", split), ctx.num_classes,
                           desc=f"score CAMs [{split}]", across_ranks=True)


def evaluate_masks(ctx: RunContext, split: str, folder: Path) -> dict[str, Any]:
    """mIoU of the PNG masks in ``folder`` against the ground truth of ``split`` (split over the
    processes under torch.distributed; every process must call it)."""
    return score_mask_files(ctx.dataset(split), folder, ctx.num_classes,
                            desc=f"score {folder.parent.name} [{split}]", across_ranks=True)
