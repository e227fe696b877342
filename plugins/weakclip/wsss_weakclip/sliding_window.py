"""Sliding-window inference as mmsegmentation 0.x does it (``EncoderDecoder.slide_inference``).

The official WeakCLIP test config runs ``mode='slide'`` with ``crop_size=(512, 512)`` and
``stride=(341, 341)``: a grid of ``ceil((size - window) / stride) + 1`` windows per axis, the last
one moved back so that it ends at the image border; every window is predicted and its logits,
resized (bilinear, ``align_corners=False``) to the window, are summed into the image and divided
by the number of windows covering each pixel. An image smaller than the window is one window of
the image's own size.

Windows of one image all have the same size, so they are run through the network in batches: a
fixed number per call, or as many as a memory budget allows (:mod:`~wsss_weakclip.window_budget`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .window_budget import WindowBudget

__all__ = ["slide_logits", "window_boxes", "window_starts"]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of length ``size`` (mmseg's grid).

    >>> window_starts(683, 512, 341)
    [0, 171]
    >>> window_starts(300, 512, 341)
    [0]
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    count = max(size - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride, size - window), 0) for i in range(count)]


def window_boxes(height: int, width: int, window: int, stride: int) -> list[tuple[int, int, int, int]]:
    """``(top, left, bottom, right)`` of every window over a ``height × width`` image, row by row."""
    boxes = []
    for top in window_starts(height, window, stride):
        for left in window_starts(width, window, stride):
            boxes.append((top, left, min(top + window, height), min(left + window, width)))
    return boxes


def slide_logits(predict: Callable[[Tensor], Tensor], images: Tensor, window: int, stride: int,
                 batch_size: int | WindowBudget = 8) -> Tensor:
    """Logits ``(B, K, H, W)`` of ``images`` ``(B, 3, H, W)`` averaged over sliding windows.

    Args:
        predict: ``(N, 3, h, w)`` → logits ``(N, K, h', w')`` at any resolution (resized here to
            the window, bilinear, ``align_corners=False``, as mmseg's ``encode_decode``).
        images: the (already rescaled) images.
        window: window side (official 512); ``stride``: step between windows (official 341).
        batch_size: windows per ``predict`` call (windows of every image in ``images`` together),
            or a :class:`~wsss_weakclip.window_budget.WindowBudget`: the first window runs alone
            (and is measured when its size was not measured before), the others go in batches that
            fit the budget.

    Every window's logits are the same whatever the batching (for a ``predict`` that treats the
    images of a batch independently); only the number of calls changes.
    """
    budget, fixed = (batch_size, 1) if isinstance(batch_size, WindowBudget) else (None, max(1, int(batch_size)))
    b, _, h, w = images.shape
    boxes = window_boxes(h, w, window, stride)
    crops = [(i, box) for box in boxes for i in range(b)]
    total: Tensor | None = None
    count = images.new_zeros((1, 1, h, w))
    for top, left, bottom, right in boxes:
        count[..., top:bottom, left:right] += 1
    sample = images[:1, :, :min(window, h), :min(window, w)]  # every window has this shape (a view, no copy)
    start = 0
    while start < len(crops):
        probe = budget is not None and budget.needs_probe(sample)
        # with a budget the first window always runs alone (measured the first time), so that a
        # call groups its windows the same way whether or not the size was measured before: the
        # same inputs give bit-equal logits from the first call on
        n = budget.windows(sample) if budget is not None and start > 0 else fixed
        chunk = crops[start:start + n]
        # only this call's windows are copied out of the view (one (n, 3, h, w) tensor)
        x = torch.stack([images[i, :, t:bo, le:r] for i, (t, le, bo, r) in chunk])
        logits = budget.probe(predict, x) if probe and budget is not None else predict(x)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        logits = logits.float()
        if total is None:
            total = logits.new_zeros((b, logits.shape[1], h, w))
        for (i, (t, le, bo, r)), out in zip(chunk, logits):
            total[i, :, t:bo, le:r] += out
        start += len(chunk)
    assert total is not None
    return total / count
