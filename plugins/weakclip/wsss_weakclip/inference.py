"""WeakCLIP pseudo-mask inference: multi-scale + flip sliding windows, averaged softmax, dense CRF,
and the paper's rule (Eq. 14) for classes outside the image label.

The official test pipeline (mmseg ``MultiScaleFlipAug``, ``img_scale=(2048, 512)``,
``img_ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75]``, ``flip=True``):

1. for each ratio ``r`` the image is resized, keeping its aspect ratio, to fit inside
   ``(2048 r, 512 r)`` (long side ≤ 2048 r, short side ≤ 512 r; mmcv's ``rescale_size``);
2. each view (and its horizontal mirror) is predicted with sliding windows
   (:func:`~wsss_weakclip.sliding_window.slide_logits`), the logits are resized to the original
   image (bilinear, ``align_corners=False``), turned into a softmax and mirrored back;
3. the softmaxes of all views are averaged.

Then (pseudo masks) the probabilities are kept for the classes present in the argmax, the
others dropped, and a dense CRF runs over the kept classes (VOC Gaussian 3/3, bilateral 83/5/3;
COCO 1/3, 67/3/4). The official code stops there; the paper (Eq. 14) further sets a pixel to 255
when its class is not in the image label.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from wsss_kit import IGNORE_INDEX
from wsss_kit.crf import dense_crf_batch, dense_crf_torch, images_to_uint8, resolve_backend
from wsss_kit.multiscale import multiscale_flip

from .sliding_window import slide_logits
from .window_budget import WindowBudget

__all__ = ["OFFICIAL_SCALES", "crf_over_predicted_classes", "multiscale_softmax", "restrict_to_labels",
           "scaled_size"]

OFFICIAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""The official test ratios of the ``(2048, 512)`` image scale."""


def scaled_size(height: int, width: int, ratio: float,
                base_size: Sequence[int] | None = (2048, 512)) -> tuple[int, int]:
    """``(h, w)`` of an image at test ratio ``ratio``.

    With ``base_size`` ``(long, short)`` the image is fitted inside ``(long · r, short · r)``
    keeping its aspect ratio (mmcv's ``imrescale``: ``int(long · r)``, ``int(short · r)``, then the
    scale factor ``min(long' / max(h, w), short' / min(h, w))`` and ``int(x · factor + 0.5)``);
    with ``None`` the image itself is scaled by ``r``.
    """
    if base_size is None:
        factor = float(ratio)
    else:
        long_side, short_side = (int(float(s) * ratio) for s in base_size)
        long_side, short_side = max(long_side, short_side), min(long_side, short_side)
        factor = min(long_side / max(height, width), short_side / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def multiscale_softmax(predict: Callable[[Tensor], Tensor], images: Tensor, *,
                       scales: Sequence[float] = OFFICIAL_SCALES, base_size: Sequence[int] | None = (2048, 512),
                       flip: bool = True, window: int = 512, stride: int = 341,
                       window_batch: int | WindowBudget = 8) -> Tensor:
    """Average softmax ``(B, K, H, W)`` over scales and (optionally) horizontal flips.

    Args:
        predict: ``(N, 3, h, w)`` → logits ``(N, K, h', w')`` (e.g. ``net(x)["logits"]``).
        images: ``(B, 3, H, W)`` in [0, 1].
        scales, base_size: the test ratios and the image scale they multiply (:func:`scaled_size`).
        flip: add the mirrored view of every scale.
        window, stride, window_batch: sliding windows (:func:`~wsss_weakclip.sliding_window.slide_logits`);
            ``window_batch``: windows per call, or a :class:`~wsss_weakclip.window_budget.WindowBudget`.
    """
    if not len(scales):
        raise ValueError("scales must hold at least one ratio")
    if any(not float(ratio) > 0 for ratio in scales):
        raise ValueError(f"scales must be positive, got {list(scales)}")
    return multiscale_flip(lambda view: slide_logits(predict, view, window, stride, window_batch), images, scales, flip,
                           size=images.shape[-2:], rounding=lambda h, w, ratio: scaled_size(h, w, ratio, base_size),
                           activation=lambda logits: logits.softmax(1), unflip="after_activation", aggregate="mean")


def crf_over_predicted_classes(probs: Tensor, images: Tensor, params: Any, workers: int | None = None,
                               backend: str = "pydensecrf") -> Tensor:
    """Dense CRF of each image over the classes present in its argmax (official pseudo-mask step).

    For each image the probabilities of the classes that win at least one pixel are kept (the
    others are dropped), a fully connected CRF runs over them with ``params`` (a
    :mod:`wsss_kit.crf` set name such as ``"weakclip_voc"``, a mapping or ``CRFParams``), and its
    marginals are put back in place. Returns ``float32 (B, K, H, W)`` on ``probs``' device: sums
    to 1 over ``K`` with 0 for the dropped classes. With ``backend="pydensecrf"`` (the reference)
    the CRFs of a batch run in worker processes; ``"torch"`` runs the batch at once on ``probs``'
    device (:func:`wsss_kit.crf.dense_crf_torch`), ``"auto"`` picks torch on CUDA.
    """
    if resolve_backend(backend, probs.device) == "torch":
        winners = probs.argmax(1).flatten(1)  # (B, H*W)
        kept_mask = torch.zeros(probs.shape[:2], dtype=torch.bool, device=probs.device).scatter_(1, winners, True)
        return dense_crf_torch(probs, images.to(probs.device), params, valid=kept_mask)
    rgb = images_to_uint8(images)
    kept = [torch.unique(probs[i].argmax(0)).cpu() for i in range(probs.shape[0])]
    sub = [probs[i, idx.to(probs.device)].float().cpu().numpy() for i, idx in enumerate(kept)]
    refined = dense_crf_batch(list(rgb), sub, params, workers=workers)
    out = torch.zeros_like(probs, dtype=torch.float32)
    for i, (idx, q) in enumerate(zip(kept, refined)):
        out[i, idx.to(out.device)] = torch.from_numpy(np.asarray(q, dtype=np.float32)).to(out.device)
    return out


def restrict_to_labels(masks: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Paper Eq. 14: ``ignore_index`` where a mask's class is neither background nor in the image label.

    Args:
        masks: int64 ``(B, H, W)`` with values ``0..C`` (0 = background).
        labels: ``(B, C)`` multi-hot over the foreground classes.
    """
    allowed = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0.5  # (B, C+1), background allowed
    keep = torch.gather(allowed.to(masks.device), 1, masks.flatten(1).clamp(0, allowed.shape[1] - 1)).view_as(masks)
    return torch.where(keep, masks, torch.full_like(masks, ignore_index))
