"""Every sample a run reads, checked against the dataset interface as it is read.

:class:`CheckedDataset` wraps a dataset plugin: a sample whose image is not a finite ``(3, H, W)``
float tensor in [0, 1], whose labels are not a ``(C,)`` multi-hot vector, whose name would leave
the run directory, or whose labels disagree with its ground-truth mask stops the run with a
:class:`~wsss_kit.errors.DataError` naming the dataset's config key and the item, before the
sample is trained on or scored. (``wsss check-data`` makes the same checks over a whole split
before a run.)
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..data.checks import check_labels_against_mask
from ..errors import DataError
from ..interfaces import WSSSDataset
from .items import name_problems

__all__ = ["CheckedDataset", "sample_problems"]


def sample_problems(sample: Mapping[str, Any], num_classes: int, *, augmented: bool = False,
                    labels_may_exceed_mask: bool = False, class_names: Any = None) -> list[str]:
    """What is wrong with one sample against the interface (empty when nothing is).

    ``augmented``: the sample went through a random crop, which may cut a labelled object out of
    the mask, so only classes the mask shows without a label are errors then."""
    problems = []
    name = sample.get("name")
    problems += name_problems([name])
    image = sample.get("image")
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        problems.append(f"image must be a float tensor (3, H, W); got {shape}")
    elif not bool(torch.isfinite(image).all()):
        problems.append("image holds NaN or inf values")
    elif float(image.min()) < -1e-4 or float(image.max()) > 1 + 1e-4:
        problems.append(f"image values must lie in [0, 1]; got [{float(image.min()):.3g}, {float(image.max()):.3g}]")
    labels = sample.get("labels")
    labels_t = torch.as_tensor(labels) if labels is not None else None
    if labels_t is None or tuple(labels_t.shape) != (num_classes,):
        got = tuple(labels_t.shape) if labels_t is not None else None
        problems.append(f"labels must be a multi-hot vector of {num_classes} classes; got shape {got}")
    elif not bool(((labels_t == 0) | (labels_t == 1)).all()):
        problems.append(f"labels must be 0 or 1; got {labels_t.tolist()}")
    mask = sample.get("mask")
    if mask is not None and labels_t is not None and tuple(labels_t.shape) == (num_classes,):
        said = check_labels_against_mask(labels_t, mask, str(name), class_names=class_names,
                                         allow_hidden=augmented or labels_may_exceed_mask)
        if said:
            problems.append(said.removeprefix(f"{name}: "))
    return problems


class CheckedDataset(WSSSDataset):
    """A dataset whose every sample is checked with :func:`sample_problems` as it is read.

    Attributes the pipeline reads (``class_names``, ``palette``, ``names``, ...) come from the
    wrapped dataset."""

    def __init__(self, base: WSSSDataset, where: str, augmented: bool = False) -> None:
        self.base = base
        self.where = where
        self.augmented = augmented
        self.class_names = tuple(base.class_names)
        self.palette = base.palette

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        sample = self.base[index]
        problems = sample_problems(sample, len(self.class_names), augmented=self.augmented,
                                   labels_may_exceed_mask=bool(getattr(self.base, "labels_may_exceed_mask", False)),
                                   class_names=self.class_names)
        if problems:
            raise DataError(f"{self.where}: item {index} ({sample.get('name')!r}): {'; '.join(problems)}")
        return sample

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def describe(self) -> str:
        return self.base.describe()
