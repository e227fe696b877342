"""The machinery shared by datasets that read images and masks from files (VOC, COCO, folder).

A subclass lists its image ids in ``names`` and says where each item's files are; this base
turns them into samples, applies the augmentation, enforces the empty-label rule and
inspects the raw files for :func:`wsss_kit.data.checks.check_dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import DataError
from ..interfaces import IGNORE_INDEX, WSSSDataset
from .checks import DataProblem, check_labels_against_mask
from .image_io import (
    ImageTooLargeError,
    MaskFormatError,
    image_to_tensor,
    mask_size_problem,
    mask_value_problem,
    read_image,
    read_image_with_mode,
    read_mask,
    read_mask_raw,
)
from .transforms import build_augment


def labels_from_mask(mask: np.ndarray, num_classes: int) -> list[int]:
    """0-based foreground indices present in a mask (values 1..C; 0 and 255 are not classes)."""
    values = np.unique(mask)
    return [int(v) - 1 for v in values if 1 <= v <= num_classes]


def multi_hot(indices: Sequence[int], num_classes: int) -> torch.Tensor:
    """``float32 (C,)`` with ones at ``indices``."""
    labels = torch.zeros(num_classes, dtype=torch.float32)
    if len(indices):
        labels[list(indices)] = 1.0
    return labels


def check_max_images(max_images: int | None) -> int | None:
    if max_images is None:
        return None
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    return max_images


class FileDataset(WSSSDataset):
    """Base of file-based datasets. Subclasses set ``names``, ``class_names``, ``palette`` and
    implement :meth:`image_file`, and where they have them :meth:`mask_file` and :meth:`label_indices`.
    """

    wsss_api_version = "1.0"

    names: list[str]
    """Image ids, in dataset order (after ``max_images``)."""

    label_file: Path | None = None
    """Label file the image-level labels come from, or ``None`` to take them from the masks."""

    _labels: dict[str, list[int]] | None = None
    """Image id → 0-based classes, read from :attr:`label_file`."""

    labels_may_exceed_mask: bool = False
    """True where a labelled class may legitimately be invisible in the mask (COCO: crowd regions
    are painted 255, small instances cover larger ones); :meth:`check_item` then reports only mask
    classes missing from the labels."""

    def __init__(
        self,
        augment: Mapping[str, Any] | Callable[[dict], dict] | None = None,
        max_images: int | None = None,
        allow_empty_labels: bool = False,
    ) -> None:
        self.augment = build_augment(augment)
        self.max_images = check_max_images(max_images)
        self.allow_empty_labels = bool(allow_empty_labels)

    # ------------------------------------------------------------------ subclass hooks
    def image_file(self, index: int) -> Path:
        raise NotImplementedError

    def mask_file(self, index: int) -> Path | None:
        """The ground-truth mask file of item ``index``, or ``None`` when the split has none."""
        return None

    def label_indices(self, index: int) -> list[int] | None:
        """0-based classes of item ``index`` from the label file, or ``None`` to take them from the mask."""
        return None if self._labels is None else self._labels[self.names[index]]

    def load_mask(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        """The checked ``int64 (H, W)`` mask of item ``index`` or ``None``; raises DataError."""
        path = self.mask_file(index)
        return None if path is None else read_mask(path, self.num_classes, size)

    def inspect_mask(self, index: int, size: tuple[int, int] | None) -> tuple[np.ndarray | None, list[DataProblem]]:
        """Read the mask without raising: ``(mask or None, every problem found)``."""
        path = self.mask_file(index)
        name = self.names[index]
        if path is None:
            return None, []
        if not path.is_file():
            return None, [DataProblem(name, str(path), "missing_mask", f"mask {path} of image {name} does not exist")]
        try:
            mask = read_mask_raw(path)
        except MaskFormatError as exc:
            return None, [DataProblem(name, str(path), "mask_format", str(exc))]
        except DataError as exc:
            return None, [DataProblem(name, str(path), "unreadable_mask", str(exc))]
        problems = []
        size_msg = mask_size_problem(path, mask, size)
        if size_msg:
            problems.append(DataProblem(name, str(path), "mask_size", size_msg))
        value_msg = mask_value_problem(path, mask, self.num_classes)
        if value_msg:
            problems.append(DataProblem(name, str(path), "mask_values", value_msg))
        return mask, problems

    def label_source(self, index: int) -> str:
        """Where the labels of item ``index`` come from, for error messages."""
        if self._labels is not None:
            return f"label file {self.label_file}"
        path = self.mask_file(index)
        return f"its mask {path}" if path is not None else "its label entry"

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range for {len(self)} images")
        index = index % len(self)
        name = self.names[index]
        image = read_image(self.image_file(index))
        size = (image.shape[0], image.shape[1])
        mask = self.load_mask(index, size)
        indices = self.resolve_labels(index, mask)
        sample = {
            "image": image_to_tensor(image),
            "labels": multi_hot(indices or [], self.num_classes),
            "mask": torch.from_numpy(mask) if mask is not None else torch.full(size, IGNORE_INDEX, dtype=torch.int64),
            "name": name,
        }
        return self.augment(sample) if self.augment is not None else sample

    def resolve_labels(self, index: int, mask: np.ndarray | None) -> list[int] | None:
        """Item ``index``'s classes (from the label source, else the mask); ``None`` when unknown.

        Raises:
            DataError: the label set is empty and ``allow_empty_labels`` is False.
        """
        indices = self.label_indices(index)
        if indices is None and mask is not None:
            indices = labels_from_mask(mask, self.num_classes)
        if indices is not None and not indices and not self.allow_empty_labels:
            raise DataError(self._empty_message(index))
        return indices

    def _empty_message(self, index: int) -> str:
        return (
            f"image {self.names[index]} ({self.image_file(index)}) has an empty label set "
            f"(no foreground class in {self.label_source(index)}); image-level supervision needs at least "
            f"one class: remove it from the split, or pass allow_empty_labels=True to keep it with all-zero labels"
        )

    # ------------------------------------------------------------------ checks
    def check_item(self, index: int) -> list[DataProblem]:
        """Every problem with item ``index``'s files (see :func:`~wsss_kit.data.checks.check_dataset`)."""
        name = self.names[index]
        path = self.image_file(index)
        problems: list[DataProblem] = []
        size = None
        try:
            image, mode = read_image_with_mode(path)
            size = (image.shape[0], image.shape[1])
            if mode != "RGB":
                problems.append(DataProblem(
                    name, str(path), "non_rgb_image",
                    f"image {path} is a {mode} image; it will be converted to RGB when read",
                ))
        except ImageTooLargeError as exc:
            problems.append(DataProblem(name, str(path), "image_too_large", str(exc)))
        except DataError as exc:
            problems.append(DataProblem(name, str(path), "unreadable_image", str(exc)))
        mask, mask_problems = self.inspect_mask(index, size)
        problems.extend(mask_problems)
        try:
            indices = self.label_indices(index)
        except DataError as exc:
            problems.append(DataProblem(name, "", "error", str(exc)))
            return problems
        if indices is not None and mask is not None and not mask_problems:
            mismatch = check_labels_against_mask(
                multi_hot(indices, self.num_classes), mask, f"image {name}", self.class_names,
                allow_hidden=self.labels_may_exceed_mask,
            )
            if mismatch:
                labels_from = f"labels from {self.label_file}, " if self.label_file is not None else ""
                where = f"{labels_from}mask {self.mask_file(index)}"
                problems.append(DataProblem(name, str(self.mask_file(index)), "label_mask_mismatch",
                                            f"{mismatch} ({where})"))
        if indices is None and mask is not None and not mask_problems:
            indices = labels_from_mask(mask, self.num_classes)
        if indices is not None and not indices and not self.allow_empty_labels:
            problems.append(DataProblem(name, str(path), "empty_labels", self._empty_message(index)))
        return problems
