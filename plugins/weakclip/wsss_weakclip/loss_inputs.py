"""What WeakCLIP's training losses share: input checks, the loss-resolution probabilities, the cues.

The official code (an mmsegmentation plugin, after DSRG) computes its two main losses on the
decoder's 1/4-resolution logits resized to a fixed ``size × size`` grid (64 × 64), from which
it builds:

* probabilities ``P = renorm(softmax(logits) + 1e-7)`` (:func:`dsrg_probabilities`), shared by
  the balanced seeding loss and the boundary loss;
* cues, the one-hot of the seed mask resized to that grid by nearest neighbour, ignored pixels
  (255) all-zero (:func:`seed_cues`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss_kit.interfaces import IGNORE_INDEX
from wsss_kit.shapes import check_shape

__all__ = [
    "DEFAULT_LOSS_SIZE",
    "DSRG_MIN_PROB",
    "check_logits",
    "check_same_view",
    "check_seeds",
    "dsrg_probabilities",
    "resize_logits",
    "seed_cues",
]

DEFAULT_LOSS_SIZE = 64
"""Side of the square grid the official code computes its seeding and boundary losses on."""

DSRG_MIN_PROB = 1e-7
"""Added to the softmax before renormalising (official ``dgcn_softmax``)."""


def check_logits(logits: object, name: str = "logits") -> Tensor:
    """``logits`` must be a floating ``(B, K, h, w)`` tensor with ``K >= 1``; returns it."""
    check_shape(logits, "B K h w", name)
    assert isinstance(logits, Tensor)  # check_shape raised otherwise
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {logits.dtype}")
    if logits.shape[0] < 1 or logits.shape[1] < 1 or logits.shape[2] < 1 or logits.shape[3] < 1:
        raise ValueError(f"{name} must be non-empty (B, K, h, w), got shape {tuple(logits.shape)}")
    return logits


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def check_same_view(
    what: str, size: tuple[int, int], other: str, other_size: tuple[int, int]
) -> None:
    """Raise if two maps cannot be resamplings of the same image.

    Maps at different strides (seeds at the image size, logits at 1/4) are fine; maps whose
    aspect ratios differ by more than the rounding of a stride (a transposed or mismatched
    mask) are not, because resizing both to one grid would silently misalign them.
    """
    (h1, w1), (h2, w2) = (int(size[0]), int(size[1])), (int(other_size[0]), int(other_size[1]))
    aspect1, aspect2 = h1 / w1, h2 / w2
    # One pixel of rounding on the smaller map's sides, plus 10% for odd crops/strides.
    tolerance = 0.1 + 1.0 / min(h1, w1, h2, w2)
    if abs(aspect1 - aspect2) > tolerance * max(aspect1, aspect2):
        verb = "are" if other.endswith("s") else "is"
        raise ValueError(
            f"{what} is {_size_text((h1, w1))} but {other} {verb} {_size_text((h2, w2))}: they must "
            f"cover the same image (aspect ratios {aspect1:.2f} and {aspect2:.2f})"
        )


def check_seeds(
    seeds: object,
    num_classes: int,
    batch: int,
    view: tuple[int, int],
    view_name: str = "the logits",
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Validate a seed mask batch against ``(batch, num_classes)`` and the map it supervises.

    Args:
        seeds: ``(B, H, W)`` integer class ids in ``0..K-1`` or ``ignore_index``.
        num_classes: ``K``, the logits' channels (background included).
        batch: ``B`` of the logits.
        view: ``(h, w)`` of the map the seeds supervise (see :func:`check_same_view`).
        view_name: how errors name that map.
        ignore_index: the ignore value.

    Returns:
        the seeds as int64.

    Raises:
        TypeError: not an integer tensor.
        ValueError: wrong shape, batch size or aspect ratio; a class id outside ``0..K-1``.
    """
    if not isinstance(seeds, Tensor):
        raise TypeError(f"seeds must be a torch.Tensor (B, H, W) int64, got {type(seeds).__name__}")
    if seeds.is_floating_point() or seeds.is_complex() or seeds.dtype == torch.bool:
        raise TypeError(f"seeds must be integer class ids (int64), got dtype {seeds.dtype}")
    check_shape(seeds, "B H W", "seeds")
    if seeds.shape[0] != batch:
        raise ValueError(f"seeds hold {seeds.shape[0]} masks but {view_name} hold {batch} images")
    check_same_view("the seed mask", (seeds.shape[-2], seeds.shape[-1]), view_name, view)
    seeds = seeds.long()
    valid = seeds != ignore_index
    bad = seeds[valid & ((seeds < 0) | (seeds >= num_classes))]
    if bad.numel():
        raise ValueError(
            f"seeds hold class id {int(bad[0])}, outside 0..{num_classes - 1} (the logits have "
            f"K = {num_classes} channels) and not the ignore value {ignore_index}"
        )
    return seeds


def resize_logits(logits: Tensor, size: int) -> Tensor:
    """Bilinear resize of ``(B, K, h, w)`` logits to ``size × size`` as the official code does.

    ``align_corners`` is True only for an odd ``size`` (the official rule; False for 64). A map
    already at that size is returned unchanged (the resize would be the identity). Half-precision
    logits are computed in float32 (the official code casts with ``.float()``); float64 stays.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    if tuple(logits.shape[-2:]) == (size, size):
        return logits
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=size % 2 == 1)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer (the loss grid side), got {size!r}")
    return size


def dsrg_probabilities(
    logits: Tensor, size: int = DEFAULT_LOSS_SIZE, min_prob: float = DSRG_MIN_PROB
) -> Tensor:
    """``P = (softmax(z) + min_prob) / Σ_k (softmax(z) + min_prob)`` at ``size × size``.

    Args:
        logits: ``(B, K, h, w)``, resized by :func:`resize_logits`.
        size: the loss grid side (official 64).
        min_prob: the floor added before renormalising (official 1e-7).

    Returns:
        ``(B, K, size, size)`` probabilities in ``(0, 1)``, float32 (float64 for float64 logits).
    """
    logits = check_logits(logits)
    probs = torch.softmax(resize_logits(logits, _check_size(size)), dim=1) + min_prob
    return probs / probs.sum(dim=1, keepdim=True)


def seed_cues(seeds: Tensor, num_classes: int, size: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """One-hot cues ``(B, K, size, size)`` of ``(B, H, W)`` seeds resized by nearest neighbour.

    The resize is ``F.interpolate(mode="nearest")`` (source index ``floor(i · H / size)``), as in
    the official code; ignored pixels get an all-zero cue vector. ``seeds`` must be checked
    already (:func:`check_seeds`). The cues are float32.
    """
    resized = F.interpolate(seeds[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    valid = resized != ignore_index
    onehot = F.one_hot(torch.where(valid, resized, torch.zeros_like(resized)), num_classes)
    return (onehot * valid[..., None]).permute(0, 3, 1, 2).float()
