"""What a trainable refiner trains on: the run's train seeds, or targets it makes from the CAMs.

A refiner that learns from something other than plain seeds defines

    training_targets(image (3, H, W) in [0, 1], cams (C, H, W), labels (C,)) -> int64 (H, W)

with 0 = background, ``1..C`` the foreground classes and 255 = unlabelled. PSA's AffinityNet
trains on confident regions of two dense CRFs, IRNet on its inter-pixel relation labels; both are
made once per training image, written to ``train_refiner/targets/<name>.png`` (resumable, each
file written atomically, split over the processes under ``torchrun``) and then read like seeds.

``refiner_targets`` (top-level config key): ``auto`` (default: the refiner's own targets when it
defines ``training_targets`` and the run computed CAMs, else the seeds), ``seeds`` or ``cams``; or
``{kind: auto|seeds|cams, workers: N}``, where ``workers`` processes make the targets (dense CRFs
cost about a second per VOC image; default one per CPU core, shared among ``torchrun``'s local
processes; 0 = in this process).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import check_keys
from ..crf.pool import resolve_workers
from ..data.artifacts import load_cams
from ..data.image_io import mask_value_problem, save_mask_png
from ..engine.distributed import barrier, get_rank, get_world_size, is_main_process
from ..errors import ConfigError, DataError
from ..interfaces import HasTrainingTargets, makes_own_targets
from ..progress import Progress
from .context import RunContext
from .items import all_exist, item_names

__all__ = ["TARGET_CHOICES", "make_cam_targets", "makes_own_targets", "refiner_target_kind"]

TARGET_CHOICES = ("auto", "seeds", "cams")


def _settings(ctx: RunContext) -> tuple[str, int | None]:
    """``refiner_targets`` as ``(kind, workers)``."""
    value = ctx.get("refiner_targets", "auto")
    workers = None
    if isinstance(value, dict):
        check_keys(value, ("kind", "workers"), "refiner_targets")
        workers = value.get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ConfigError(f"refiner_targets.workers must be an integer >= 0 or null, got {workers!r}")
        value = value.get("kind", "auto")
    return value, workers


def refiner_target_kind(ctx: RunContext, refiner: Any, has_cams: bool) -> str:
    """``"seeds"`` or ``"cams"``: what ``train_refiner`` trains ``refiner`` on (``refiner_targets``)."""
    value, _ = _settings(ctx)
    if value not in TARGET_CHOICES:
        raise ConfigError(f"refiner_targets must be one of {', '.join(TARGET_CHOICES)}, got {value!r}")
    makes = makes_own_targets(refiner)
    if value == "auto":
        return "cams" if makes and has_cams else "seeds"
    if value == "cams":
        name = ctx.get("refiner.type", "the refiner")
        if not makes:
            raise ConfigError(f"refiner_targets is cams, but {name} makes no targets from CAMs (it has no "
                              "training_targets method); use refiner_targets: seeds")
        if not has_cams:
            raise ConfigError(f"refiner_targets is cams, but this run computed no CAMs (no cam section); "
                              f"{name} can only train on the seeds here (refiner_targets: seeds)")
    return value


def _check_target(target: Any, size: tuple[int, int], num_classes: int, name: str, refiner: str) -> np.ndarray:
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or tuple(target.shape) != size:
        got = f"{target.dtype} {tuple(target.shape)}" if isinstance(target, torch.Tensor) else type(target).__name__
        raise DataError(f"{refiner}.training_targets for image {name!r} must return an integer tensor of the image "
                        f"size {size}, got {got}")
    arr = target.cpu().numpy().astype(np.int64)
    problem = mask_value_problem(f"the target of image {name!r}", arr, num_classes)
    if problem:
        raise DataError(f"{refiner}.training_targets: {problem}")
    return arr


class _TargetJobs(Dataset):
    """Item ``k``: ``(name, int64 (H, W) array)``, the target of ``dataset[indices[k]]``."""

    def __init__(self, dataset: Any, indices: list[int], cam_dir: Path, num_classes: int,
                 refiner: HasTrainingTargets, label: str) -> None:
        self.dataset, self.indices, self.cam_dir = dataset, indices, cam_dir
        self.num_classes, self.refiner, self.label = num_classes, refiner, label

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[str, np.ndarray]:
        sample = self.dataset[self.indices[k]]
        name, image = sample["name"], sample["image"]
        cam_file = self.cam_dir / f"{name}.npz"
        cams = load_cams(cam_file, self.num_classes)
        if tuple(cams.shape[-2:]) != tuple(image.shape[-2:]):
            raise DataError(f"CAM file {cam_file} is {tuple(cams.shape[-2:])} but image {name!r} is "
                            f"{tuple(image.shape[-2:])}")
        with torch.no_grad():
            target = self.refiner.training_targets(image, cams, torch.as_tensor(sample["labels"]).float())
        return name, _check_target(target, tuple(image.shape[-2:]), self.num_classes, name, self.label)


def make_cam_targets(ctx: RunContext, refiner: Any, fingerprint: str) -> Path:
    """Make ``refiner``'s targets for every image of ``data.train`` from the train CAMs; return their folder.

    Files already there are kept when they were made under the same ``fingerprint`` (the
    ``train_refiner`` stage's); otherwise the folder is emptied first. Under ``torchrun`` process
    ``r`` of ``N`` makes images ``r, r + N, ...`` and all wait for each other before training."""
    out = ctx.path("train_refiner", "targets")
    stamp = out / "fingerprint.txt"
    if is_main_process():
        if out.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint + "\n")
    barrier()
    ds = ctx.dataset("train")
    names = item_names(ds)
    todo = [i for i in range(get_rank(), len(ds), get_world_size()) if not (out / f"{names[i]}.png").exists()]
    label = str(ctx.get("refiner.type", "refiner"))
    jobs = _TargetJobs(ds, todo, ctx.path("cams", "train"), ctx.num_classes, refiner, label)
    workers = _settings(ctx)[1]
    workers = resolve_workers(workers, len(todo))  # None: the run's threads.crf_workers
    # Forked workers share the built refiner; batch_size=None hands over one item at a time.
    loader = DataLoader(jobs, batch_size=None, num_workers=workers)
    for name, arr in Progress(len(todo), f"refiner targets from CAMs ({label})").wrap(loader):
        save_mask_png(out / f"{name}.png", arr, ctx.reference.palette)
    if not all_exist(out, names, ".png"):
        missing = [n for n in names if not (out / f"{n}.png").exists()]
        raise DataError(f"refiner targets missing in {out} for {len(missing)} image(s), e.g. {missing[:3]}")
    return out
