"""Scan a dataset for every broken or suspicious item in one pass (``wsss check-data``).

A training run that dies on image 8,000 of 10,582 because one JPEG is truncated wastes hours;
:func:`check_dataset` reads everything up front and reports all problems together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..errors import DataError
from ..interfaces import IGNORE_INDEX
from ..progress import Progress
from .image_io import ImageTooLargeError, max_image_pixels

PROBLEM_TITLES = {
    "unreadable_image": "unreadable or corrupt images",
    "image_too_large": "images too large to decode (limit: $WSSS_KIT_MAX_IMAGE_PIXELS, default 40 Mpx)",
    "non_rgb_image": "images that are not RGB (they will be converted)",
    "missing_mask": "missing masks",
    "unreadable_mask": "unreadable masks",
    "mask_format": "masks that are not palette/index images",
    "mask_size": "masks whose size differs from the image",
    "mask_values": "masks with out-of-range values",
    "empty_labels": "images with an empty label set",
    "label_mask_mismatch": "image-level labels that disagree with the ground-truth mask",
    "seed_classes": "seed masks with classes that the image's labels do not have",
    "bad_sample": "samples that break the dataset contract",
    "error": "other errors",
}
"""Problem kind → heading used by :func:`format_problems`."""

NOTE_KINDS = frozenset({"non_rgb_image"})
"""Problem kinds that are notes (the item still loads) rather than errors."""


@dataclass(frozen=True)
class DataProblem:
    """One problem with one dataset item.

    Attributes:
        name: the item's image id.
        file: the file at fault (empty when not file-based).
        problem: a kind from :data:`PROBLEM_TITLES` (e.g. ``"mask_size"``).
        message: a full sentence naming the file, what was expected and what was found.
    """

    name: str
    file: str
    problem: str
    message: str

    @property
    def is_note(self) -> bool:
        """True for notes (e.g. a greyscale image that will be converted), False for errors."""
        return self.problem in NOTE_KINDS


def _item_name(dataset: Any, index: int) -> str:
    names = getattr(dataset, "names", None)
    try:
        return str(names[index]) if names is not None else str(index)
    except (IndexError, TypeError, KeyError):
        return str(index)


def check_labels_against_mask(
    labels: Any,
    mask: Any,
    name: str,
    class_names: Sequence[str] | None = None,
    allow_hidden: bool = False,
) -> str | None:
    """The message for an item whose image-level labels and ground-truth mask disagree, or ``None``.

    A class the mask shows (value ``c`` in ``1..C``) that the labels lack, or a class the labels
    name that the mask does not show, is a disagreement: one of the two files is wrong, and a run
    would train on the labels and score against the mask. A mask with no value other than 255
    (no ground truth, e.g. a test split) and values outside ``0..C`` (reported as
    ``mask_values``) are not compared.

    Args:
        labels: multi-hot ``(C,)`` over the foreground classes (tensor or array, as in a sample).
        mask: ``(H, W)`` integer mask, 0 = background, ``1..C`` = classes, 255 = ignore. Compare
            masks before augmentation: a crop can remove a labelled class.
        name: the item, named in the message.
        class_names: ``C`` names, shown next to the mask values.
        allow_hidden: accept labelled classes the mask does not show (datasets whose masks can
            hide a labelled object, such as COCO's crowd regions painted 255).
    """
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    num_classes = int(labels.shape[-1]) if labels.ndim else 0
    values = np.unique(mask)
    if not np.any(values != IGNORE_INDEX):
        return None
    in_labels = {int(i) for i in np.flatnonzero(labels.reshape(-1) > 0)}
    in_mask = {int(v) - 1 for v in values if 1 <= v <= num_classes}
    unlabelled = sorted(in_mask - in_labels)
    hidden = [] if allow_hidden else sorted(in_labels - in_mask)
    if not unlabelled and not hidden:
        return None

    def show(indices: Iterable[int]) -> str:
        parts = []
        for i in indices:
            label = f"{class_names[i]!r} " if class_names is not None and i < len(class_names) else "class "
            parts.append(f"{label}(mask value {i + 1})")
        return ", ".join(parts) or "none"

    said = []
    if unlabelled:
        said.append(f"the mask shows {show(unlabelled)} that the labels do not name")
    if hidden:
        said.append(f"the labels name {show(hidden)} that the mask does not show")
    return (
        f"{name}: labels and ground-truth mask disagree: {'; '.join(said)} "
        f"(labels: {show(sorted(in_labels))}; mask: {show(sorted(in_mask))}); fix the label file or the mask"
    )


def check_sample(sample: Any, num_classes: int, name: str, compare_labels: bool = False,
                 class_names: Sequence[str] | None = None) -> list[DataProblem]:
    """Problems with a loaded sample dict against the WSSSDataset contract (shapes, dtypes, values).

    With ``compare_labels`` (un-augmented samples only), labels that disagree with the mask are
    reported too (:func:`check_labels_against_mask`).
    """
    found: list[DataProblem] = []

    def bad(message: str, kind: str = "bad_sample") -> None:
        found.append(DataProblem(name, "", kind, f"sample {name}: {message}"))

    if not isinstance(sample, dict):
        bad(f"expected a dict with image, labels, mask and name, got {type(sample).__name__}")
        return found
    missing = [k for k in ("image", "labels", "mask", "name") if k not in sample]
    if missing:
        bad(f"missing key(s) {', '.join(missing)}")
        return found
    image, labels, mask = sample["image"], sample["labels"], sample["mask"]
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32 or image.dim() != 3 or image.shape[0] != 3:
        bad(f"image must be a float32 (3, H, W) tensor, got {_describe(image)}")
    elif image.numel() and (float(image.min()) < 0.0 or float(image.max()) > 1.0):
        bad(f"image values must be in [0, 1], got {float(image.min()):.3g}..{float(image.max()):.3g}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.float32 or tuple(labels.shape) != (num_classes,):
        bad(f"labels must be a float32 ({num_classes},) tensor, got {_describe(labels)}")
    elif float(labels.sum()) == 0:
        bad("the label set is empty", "empty_labels")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.int64 or mask.dim() != 2:
        bad(f"mask must be an int64 (H, W) tensor, got {_describe(mask)}")
    else:
        if isinstance(image, torch.Tensor) and image.dim() == 3 and tuple(mask.shape) != tuple(image.shape[1:]):
            bad(f"mask is {mask.shape[0]}x{mask.shape[1]} but the image is {image.shape[1]}x{image.shape[2]}",
                "mask_size")
        values = torch.unique(mask)
        out = values[((values < 0) | (values > num_classes)) & (values != IGNORE_INDEX)]
        if out.numel():
            bad(f"mask has values outside 0..{num_classes} and 255: {out.tolist()[:20]}", "mask_values")
        labels_ok = isinstance(labels, torch.Tensor) and tuple(labels.shape) == (num_classes,)
        mask_ok = not any(p.problem in ("mask_size", "mask_values") for p in found)
        if compare_labels and labels_ok and mask_ok:
            message = check_labels_against_mask(labels, mask, f"sample {name}", class_names)
            if message:
                found.append(DataProblem(name, "", "label_mask_mismatch", message))
    return found


def _describe(x: Any) -> str:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"{type(x).__name__} {x.dtype} {tuple(x.shape)}"
    return type(x).__name__


def check_dataset(dataset: Any, progress: bool = True) -> list[DataProblem]:
    """Inspect every item of ``dataset`` and return all problems found (never stops at the first).

    Uses ``dataset.check_item(index)`` when the dataset has it (file-based datasets inspect the
    raw files: unreadable images, images over the pixel limit, non-RGB images as notes, missing,
    mis-sized or out-of-range masks, empty label sets, labels that disagree with the mask).
    Otherwise each item is loaded with ``dataset[index]``: a raised exception is recorded, and the
    returned sample is checked against the WSSSDataset contract, and, when the dataset has no
    ``augment``, its labels against its mask.

    Raises:
        ConfigError: ``$WSSS_KIT_MAX_IMAGE_PIXELS`` is malformed (checked once, before any item).
    """
    max_image_pixels()
    problems: list[DataProblem] = []
    checker = getattr(dataset, "check_item", None)
    class_names = tuple(getattr(dataset, "class_names", ()))
    num_classes = len(class_names)
    compare_labels = getattr(dataset, "augment", None) is None
    for index in Progress(len(dataset), "checking data", enabled=progress).wrap(range(len(dataset))):
        name = _item_name(dataset, index)
        try:
            if checker is not None:
                problems.extend(checker(index))
                continue
            sample = dataset[index]
        except ImageTooLargeError as exc:
            problems.append(DataProblem(name, "", "image_too_large", str(exc)))
            continue
        except DataError as exc:
            message = str(exc) if name in str(exc) else f"{name}: {exc}"
            problems.append(DataProblem(name, "", "error", message))
            continue
        except Exception as exc:  # noqa: BLE001 - the point is to report every failure, of any type
            problems.append(DataProblem(name, "", "error", f"{name}: {type(exc).__name__}: {exc}"))
            continue
        problems.extend(check_sample(sample, num_classes, name, compare_labels, class_names))
    return problems


def format_problems(problems: Iterable[DataProblem], max_per_kind: int = 20) -> str:
    """A readable report: errors then notes, grouped by problem kind, with counts.

    At most ``max_per_kind`` messages are shown per kind, followed by how many were left out.
    """
    problems = list(problems)
    if not problems:
        return "no problems found"
    groups: dict[str, list[DataProblem]] = defaultdict(list)
    for p in problems:
        groups[p.problem].append(p)
    errors = [p for p in problems if not p.is_note]
    notes = len(problems) - len(errors)
    items = len({p.name for p in errors})
    lines = [f"{len(errors)} error(s) in {items} item(s), {notes} note(s)"]
    order = list(PROBLEM_TITLES) + sorted(set(groups) - set(PROBLEM_TITLES))
    order.sort(key=lambda k: k in NOTE_KINDS)
    for kind in order:
        group = groups.get(kind)
        if not group:
            continue
        label = "note" if kind in NOTE_KINDS else "error"
        lines.append(f"\n[{label}] {PROBLEM_TITLES.get(kind, kind)} ({kind}): {len(group)}")
        for p in group[:max_per_kind]:
            lines.append(f"  - {p.message}")
        if len(group) > max_per_kind:
            lines.append(f"  ... and {len(group) - max_per_kind} more")
    return "\n".join(lines)
