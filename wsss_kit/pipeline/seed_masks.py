"""Seed-mask folders as training targets or brought-in files: checked up front, every bad file named.

A refiner trained on seed masks (``train_refiner``) or a run that starts from someone else's seeds
(``seeds.source``, e.g. the released MCTformer seeds) reads one PNG per image. A single mis-sized
file found at step 15,000 of 20,000 wastes a day, so :func:`check_seed_masks` reads every file
first and reports all problems together: missing or unreadable files, colour (non-index) PNGs,
a size other than the image's, values outside ``0..C`` and 255, and classes that the image's
labels do not have (a seed for a class that is not in the image is a wrong target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.checks import DataProblem, format_problems
from ..data.image_io import mask_size_problem, mask_value_problem, read_mask_raw, save_mask_png
from ..errors import DataError
from ..interfaces import IGNORE_INDEX, WSSSDataset
from .items import item_names

__all__ = ["check_seed_masks", "copy_seed_masks", "raise_seed_problems", "seed_mask_problems"]


def seed_mask_problems(path: Path, mask: np.ndarray, name: str, size: Sequence[int],
                       labels: torch.Tensor) -> list[DataProblem]:
    """Problems of one decoded seed mask ``(H, W)`` for the image ``name`` of ``size`` ``(H, W)``
    with multi-hot ``labels`` ``(C,)``: wrong size, out-of-range values, classes not in the labels."""
    found = []
    num_classes = int(labels.numel())
    problem = mask_size_problem(path, mask, size)
    if problem:
        found.append(DataProblem(name, str(path), "mask_size", f"seed {problem} (image {name!r})"))
    problem = mask_value_problem(path, mask, num_classes)
    if problem:
        found.append(DataProblem(name, str(path), "mask_values", f"seed {problem} (image {name!r})"))
        return found
    values = np.unique(mask)
    classes = [int(v) for v in values if 0 < v <= num_classes]
    present = {int(c) + 1 for c in torch.nonzero(labels > 0.5).flatten().tolist()}
    stray = [c for c in classes if c not in present]
    if stray:
        found.append(DataProblem(
            name, str(path), "seed_classes",
            f"seed mask {path} of image {name!r} has class(es) {stray} that the image's labels do not have "
            f"(labels: {sorted(present) or 'none'}; values are 1..{num_classes} for the foreground classes, "
            f"0 background, {IGNORE_INDEX} ignore)"))
    return found


def check_seed_masks(dataset: WSSSDataset, folder: str | Path, indices: Iterable[int] | None = None,
                     desc: str = "check seeds") -> list[DataProblem]:
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
    for i in tqdm(todo, desc=desc, unit="img", leave=False):
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
        problems.extend(seed_mask_problems(path, mask, name, tuple(sample["image"].shape[-2:]), labels))
    return problems


def raise_seed_problems(problems: Sequence[DataProblem], folder: str | Path, what: str) -> None:
    """Raise :class:`DataError` listing every problem (grouped by kind), or return when there is none."""
    if not problems:
        return
    files = len({p.file for p in problems})
    raise DataError(f"{what}: {files} seed mask file(s) in {folder} cannot be used:\n"
                    + format_problems(problems, max_per_kind=50))


def copy_seed_masks(dataset: WSSSDataset, source: str | Path, out: Path, indices: Iterable[int],
                    palette: Sequence[Sequence[int]] | None, desc: str = "copy seeds", what: str | None = None) -> int:
    """Check the masks ``source/<name>.png`` of ``indices`` and write them as palette PNGs to ``out``
    (existing outputs are kept). Raises :class:`DataError` naming every bad file first; ``what``
    names the folder's config key in it (default ``seeds.source``)."""
    indices = list(indices)
    names = item_names(dataset)
    todo = [i for i in indices if not (out / f"{names[i]}.png").exists()]
    raise_seed_problems(check_seed_masks(dataset, source, todo, desc=f"{desc}: check"), source,
                        what or f"seeds.source {source}")
    for i in tqdm(todo, desc=desc, unit="img", leave=False):
        mask = read_mask_raw(Path(source) / f"{names[i]}.png")
        save_mask_png(out / f"{names[i]}.png", mask, palette)
    return len(todo)
