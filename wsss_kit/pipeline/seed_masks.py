"""Seed-mask folders as training targets or brought-in files: checked up front, every bad file named.

A refiner trained on seed masks (``train_refiner``) or a run that starts from someone else's seeds
(``seeds.source``, e.g. the released MCTformer seeds) reads one PNG per image. A single mis-sized
file found at step 15,000 of 20,000 wastes a day, so :func:`check_seed_masks` reads every file
first and reports all problems together: missing or unreadable files, colour (non-index) PNGs,
a size other than the image's, values outside ``0..C`` and 255, and classes that the image's
labels do not have (a seed for a class that is not in the image is a wrong target).

That last check has a switch, ``outside_labels`` (config keys ``seeds.outside_labels`` and
``pseudo_masks.outside_labels``): ``"error"`` (the default) refuses such files; ``"keep"`` trains on
them as they are, which is what a method's official retrain does when its refiner does not restrict
its masks to the image labels (WeakCLIP's released code has no Eq. 14); ``"ignore"`` sets those
pixels to 255 (ignore) when the masks are copied into the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..data.checks import DataProblem, format_problems
from ..data.image_io import mask_size_problem, mask_value_problem, read_mask_raw, save_mask_png
from ..errors import DataError
from ..interfaces import IGNORE_INDEX, WSSSDataset
from ..progress import Progress
from .items import item_names

__all__ = ["OUTSIDE_LABELS", "check_seed_masks", "copy_seed_masks", "raise_seed_problems", "seed_mask_problems",
           "stray_classes"]

OUTSIDE_LABELS = ("error", "keep", "ignore")
"""What to do with mask pixels of a class that the image's labels do not have."""


def stray_classes(mask: np.ndarray, labels: torch.Tensor) -> list[int]:
    """Mask values ``1..C`` of ``mask`` whose class is not in the multi-hot ``labels`` ``(C,)``."""
    num_classes = int(labels.numel())
    present = {int(c) + 1 for c in torch.nonzero(labels > 0.5).flatten().tolist()}
    return [int(v) for v in np.unique(mask) if 0 < v <= num_classes and int(v) not in present]


def seed_mask_problems(path: Path, mask: np.ndarray, name: str, size: Sequence[int],
                       labels: torch.Tensor, outside_labels: str = "error") -> list[DataProblem]:
    """Problems of one decoded seed mask ``(H, W)`` for the image ``name`` of ``size`` ``(H, W)``
    with multi-hot ``labels`` ``(C,)``: wrong size, out-of-range values, and (``outside_labels``
    ``"error"``) classes not in the labels."""
    found = []
    num_classes = int(labels.numel())
    problem = mask_size_problem(path, mask, size)
    if problem:
        found.append(DataProblem(name, str(path), "mask_size", f"seed {problem} (image {name!r})"))
    problem = mask_value_problem(path, mask, num_classes)
    if problem:
        found.append(DataProblem(name, str(path), "mask_values", f"seed {problem} (image {name!r})"))
        return found
    stray = stray_classes(mask, labels) if outside_labels == "error" else []
    if stray:
        present = {int(c) + 1 for c in torch.nonzero(labels > 0.5).flatten().tolist()}
        found.append(DataProblem(
            name, str(path), "seed_classes",
            f"seed mask {path} of image {name!r} has class(es) {stray} that the image's labels do not have "
            f"(labels: {sorted(present) or 'none'}; values are 1..{num_classes} for the foreground classes, "
            f"0 background, {IGNORE_INDEX} ignore; outside_labels: keep or ignore accepts such masks)"))
    return found


def check_seed_masks(dataset: WSSSDataset, folder: str | Path, indices: Iterable[int] | None = None,
                     desc: str = "check seeds", outside_labels: str = "error") -> list[DataProblem]:
    """Every problem of the seed masks ``folder/<name>.png`` of ``dataset``'s items (all, or ``indices``).

    Reads each item of the (un-augmented) dataset for its image size and labels, and each mask
    file. Returns :class:`~wsss_kit.data.checks.DataProblem` s (kinds ``missing_mask``,
    ``unreadable_mask``, ``mask_size``, ``mask_values``, ``seed_classes``); an empty list means
    every file is fit to train on.
    """
    folder = Path(folder)
    names = item_names(dataset)
    todo = range(len(dataset)) if indices is None else list(indices)
    problems: list[DataProblem] = []
    if not folder.is_dir():
        return [DataProblem("", str(folder), "missing_mask", f"seed folder {folder} does not exist")]
    for i in Progress(len(todo), desc, leave=False).wrap(todo):
        name = names[i]
        path = folder / f"{name}.png"
        if not path.is_file():
            problems.append(DataProblem(name, str(path), "missing_mask",
                                        f"seed mask {path} is missing for image {name!r}"))
            continue
        try:
            mask = read_mask_raw(path)
        except DataError as exc:
            problems.append(DataProblem(name, str(path), "unreadable_mask", f"{exc} (image {name!r})"))
            continue
        sample = dataset[i]
        labels = torch.as_tensor(sample["labels"]).flatten()
        problems.extend(seed_mask_problems(path, mask, name, tuple(sample["image"].shape[-2:]), labels,
                                           outside_labels))
    return problems


def raise_seed_problems(problems: Sequence[DataProblem], folder: str | Path, what: str) -> None:
    """Raise :class:`DataError` listing every problem (grouped by kind), or return when there is none."""
    if not problems:
        return
    files = len({p.file for p in problems})
    raise DataError(f"{what}: {files} seed mask file(s) in {folder} cannot be used:\n"
                    + format_problems(problems, max_per_kind=50))


def copy_seed_masks(dataset: WSSSDataset, source: str | Path, out: Path, indices: Iterable[int],
                    palette: Sequence[Sequence[int]] | None, desc: str = "copy seeds", what: str | None = None,
                    outside_labels: str = "error") -> int:
    """Check the masks ``source/<name>.png`` of ``indices`` and write them as palette PNGs to ``out``
    (existing outputs are kept). Raises :class:`DataError` naming every bad file first; ``what``
    names the folder's config key in it (default ``seeds.source``). ``outside_labels``: see the
    module docstring. Returns how many copied masks had pixels of classes outside their image's labels
    (kept or set to ignore)."""
    if outside_labels not in OUTSIDE_LABELS:
        raise ValueError(f"outside_labels must be one of {', '.join(OUTSIDE_LABELS)}, got {outside_labels!r}")
    indices = list(indices)
    names = item_names(dataset)
    todo = [i for i in indices if not (out / f"{names[i]}.png").exists()]
    raise_seed_problems(check_seed_masks(dataset, source, todo, desc=f"{desc}: check",
                                         outside_labels=outside_labels), source, what or f"seeds.source {source}")
    with_stray = 0
    for i in Progress(len(todo), desc, leave=False).wrap(todo):
        mask = read_mask_raw(Path(source) / f"{names[i]}.png")
        if outside_labels != "error":
            stray = stray_classes(mask, torch.as_tensor(dataset[i]["labels"]).flatten())
            with_stray += bool(stray)
            if stray and outside_labels == "ignore":
                mask = np.where(np.isin(mask, stray), IGNORE_INDEX, mask).astype(mask.dtype)
        save_mask_png(out / f"{names[i]}.png", mask, palette)
    return with_stray
