"""Test-time augmentation over scales and horizontal flips, written once.

Every WSSS inference loop is the same: for each scale resize the batch, for each flip mirror it,
run a network, mirror the output back, resize it to a target size, and accumulate. The official
codes differ only in details, which are the arguments of :func:`multiscale_flip`:

* how a scaled size is rounded (``"round"``: IRN/CLIMS/MCTformer CAMs; ``"floor"``, i.e.
  ``int(H·s)``: DeepLab/MCTformer segmentation; or a function, e.g. mmseg's keep-ratio rescale);
* the input resize's ``align_corners`` (MCTformer's segmentation: True);
* what happens to each output before it is resized (``prepare``: a shape check, ReLU, ``float()``)
  and after (``activation``: softmax);
* where the mirror is undone (before or after the resize, or after the activation: flipping
  commutes with these in exact arithmetic, but the official orders are kept so the floats match);
* the aggregation: ``"sum"``, ``"mean"`` or the pixel-wise ``"max"`` over all views.

Views run in the order ``for scale in scales: for flipped in (False, True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import check_shape

__all__ = ["AGGREGATIONS", "ROUNDINGS", "UNFLIP_AT", "View", "multiscale_flip", "scaled_size"]

AGGREGATIONS = ("sum", "mean", "max")
ROUNDINGS = ("round", "floor")
UNFLIP_AT = ("before_resize", "after_resize", "after_activation")

SizeFn = Callable[[int, int, float], tuple[int, int]]
Rounding = Union[str, SizeFn]


@dataclass(frozen=True)
class View:
    """One pass: the input scale and whether the batch was mirrored."""

    scale: float
    flipped: bool

    @property
    def where(self) -> str:
        """``"scale 0.5"`` / ``"scale 0.5 (flipped)"``, for error messages."""
        return f"scale {self.scale:g}" + (" (flipped)" if self.flipped else "")


def scaled_size(height: int, width: int, scale: float, rounding: Rounding = "round") -> tuple[int, int]:
    """The input size of a view at ``scale``: ``round(s·H) × round(s·W)`` (``"round"``),
    ``int(s·H) × int(s·W)`` (``"floor"``), at least 1 each; or ``rounding(H, W, s)``."""
    if callable(rounding):
        return rounding(height, width, scale)
    if rounding == "round":
        return max(1, round(height * scale)), max(1, round(width * scale))
    if rounding == "floor":
        return max(1, int(height * scale)), max(1, int(width * scale))
    raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDINGS))} or a function (H, W, scale) -> "
                     f"(h, w); got {rounding!r}")


def _check_options(scales: tuple[float, ...], aggregate: str, unflip: str, rounding: Rounding) -> None:
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers; got {list(scales)}")
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(map(repr, AGGREGATIONS))}; got {aggregate!r}")
    if unflip not in UNFLIP_AT:
        raise ValueError(f"unflip must be one of {', '.join(map(repr, UNFLIP_AT))}; got {unflip!r}")
    if not callable(rounding) and rounding not in ROUNDINGS:
        scaled_size(1, 1, 1.0, rounding)  # raises the message


def multiscale_flip(
    fn: Callable[[Tensor], Tensor],
    images: Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    *,
    size: Sequence[int] | None = None,
    rounding: Rounding = "round",
    resize_align_corners: bool = False,
    prepare: Callable[[Tensor, View], Tensor] | None = None,
    activation: Callable[[Tensor], Tensor] | None = None,
    unflip: str = "after_resize",
    aggregate: str = "sum",
    name: str = "fn",
    batch_flip: bool = False,
) -> Tensor:
    """Run ``fn`` on every scale (and mirror) of ``images`` and aggregate the outputs at ``size``.

    For each view: the images are resized (bilinear) to :func:`scaled_size` (left as they are when
    that is their size), mirrored when ``flipped``, and ``y = fn(x)``; then ``prepare(y, view)``,
    the mirror undone at ``unflip``, ``y`` resized (bilinear, ``align_corners=False``) to ``size``
    when one is given and ``y`` is not that size already, and ``activation(y)``. The views' outputs are summed, averaged
    (the sum divided by the number of views) or reduced by the pixel-wise maximum.

    Gradients flow through ``fn``; wrap the call in ``torch.no_grad()`` for inference.

    Args:
        fn: ``(B, 3, h', w')`` → ``(B, K, h, w)`` (any ``h, w``).
        images: ``(B, C, H, W)``.
        scales: positive input scales.
        flip: add the horizontally mirrored view of every scale.
        size: ``(H_out, W_out)`` every output is brought to, e.g. the images' ``(H, W)``; ``None``
            leaves the outputs at their own size (one scale, or outputs of one size).
        rounding: ``"round"``, ``"floor"`` or a function ``(H, W, scale) -> (h, w)``.
        resize_align_corners: ``align_corners`` of the input resize.
        prepare: ``(output, view) -> output`` before the resize (checks, ReLU, dtype).
        activation: applied to each view's output after the resize (e.g. a softmax).
        unflip: ``"before_resize"``, ``"after_resize"`` or ``"after_activation"``.
        aggregate: ``"sum"``, ``"mean"`` or ``"max"``.
        name: what ``fn`` is called in error messages (``"the model"``).
        batch_flip: with ``flip``, give ``fn`` a scale and its mirror as one batch ``(2B, ...)``
            (one call instead of two); each half then goes on as its own view, as without it. Only
            for an ``fn`` whose output for an image does not depend on the rest of its batch.

    Returns:
        ``(B, K, H_out, W_out)`` (``(B, K, h, w)`` without ``size``).

    Raises:
        ValueError / TypeError: bad images or options; outputs whose class count changes between
        views (naming the view).
    """
    check_shape(images, "B C H W", "images")
    scales = tuple(float(s) for s in scales)
    _check_options(scales, aggregate, unflip, rounding)
    height, width = int(images.shape[-2]), int(images.shape[-1])
    out_size = None if size is None else tuple(int(s) for s in size)
    total: Tensor | None = None
    count = 0
    for scale in scales:
        in_size = scaled_size(height, width, scale, rounding)
        if in_size == (height, width):
            scaled = images
        else:
            scaled = F.interpolate(images, size=in_size, mode="bilinear", align_corners=resize_align_corners)
        both = None
        if flip and batch_flip:
            both = fn(torch.cat([scaled, scaled.flip(-1)]))
            if both.dim() < 1 or both.shape[0] != 2 * images.shape[0]:
                raise ValueError(f"{name} returned a batch of {tuple(both.shape)[:1]} for the {2 * images.shape[0]} "
                                 f"images of scale {scale} and their mirror (batch_flip)")
        for flipped in (False, True) if flip else (False,):
            view = View(scale, flipped)
            if both is not None:
                out = both[images.shape[0]:] if flipped else both[: images.shape[0]]
            else:
                out = fn(scaled.flip(-1) if flipped else scaled)
            if prepare is not None:
                out = prepare(out, view)
            if flipped and unflip == "before_resize":
                out = out.flip(-1)
            if out_size is not None and tuple(out.shape[-2:]) != out_size:
                out = F.interpolate(out, size=out_size, mode="bilinear", align_corners=False)
            if flipped and unflip == "after_resize":
                out = out.flip(-1)
            if activation is not None:
                out = activation(out)
            if flipped and unflip == "after_activation":
                out = out.flip(-1)
            if total is not None and out.shape[1] != total.shape[1]:
                raise ValueError(f"{name} returned {out.shape[1]} classes at {view.where} but {total.shape[1]} before")
            if total is None:
                total = out
            elif aggregate == "max":
                total = torch.maximum(total, out)
            else:
                total = total + out
            count += 1
    assert total is not None
    return total / count if aggregate == "mean" else total
