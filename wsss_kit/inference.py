"""Test-time inference of retrain heads: multi-scale + flip, mean or max over the views, optional dense CRF.

The official retrains differ here: MCTformer's ``seg/infer_seg.py`` takes the pixel-wise *max* of
the softmax over scales 0.5–1.5 (input resized bilinearly with ``align_corners=True``, no flip) and
runs a dense CRF (4, 3)/(83, 5, 3); WeakCLIP's retrain *averages* scales 0.5–1.5 with flips and
runs a CRF (1, 3)/(112, 2, 3); kazuto1011's DeepLabV2 (CLIMS, POLE) evaluates one scale (its MSC
fusion is inside the network) with a CRF (1, 3)/(67, 3, 4). :func:`predict_multiscale` does all
three.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .multiscale import View, multiscale_flip

__all__ = ["AGGREGATIONS", "predict_multiscale"]

AGGREGATIONS = ("mean", "max")


def _check(images: Any, scales: tuple[float, ...], aggregate: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [0, 1]; got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"images must be float (B, 3, H, W) RGB in [0, 1]; got {images.dtype} {tuple(images.shape)}")
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers; got {list(scales)}")
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {', '.join(map(repr, AGGREGATIONS))}; got {aggregate!r}")


@torch.no_grad()
def predict_multiscale(
    model: nn.Module,
    images: torch.Tensor,
    scales: Iterable[float] = (1.0,),
    flip: bool = False,
    aggregate: str = "mean",
    crf: str | Mapping[str, Any] | Any | None = None,
    *,
    resize_align_corners: bool = False,
    crf_workers: int | None = None,
    crf_backend: str = "pydensecrf",
) -> torch.Tensor:
    """Class probabilities ``(B, K, H, W)`` of a retrain head over scales and flips.

    Each view is the image resized (bilinear) to ``(int(H·s), int(W·s))`` for every scale ``s`` (the
    image itself at 1.0), plus its horizontal mirror with ``flip``; the model's logits of a view
    (mirrored back) are resized to ``H × W`` (bilinear, ``align_corners=False``) and softmaxed.

    Args:
        model: ``model(images) -> logits (B, K, h, w)`` (any ``h, w``), already in eval mode.
        images: ``(B, 3, H, W)`` float RGB in [0, 1].
        scales: input scales.
        flip: add the mirrored view of every scale.
        aggregate: ``"mean"`` (average of the views' probabilities, which sum to 1 over ``K``) or
            ``"max"`` (pixel-wise maximum over all views, MCTformer's rule; not renormalised, which
            changes neither the argmax nor the CRF beyond its clamp).
        crf: ``None``, or dense-CRF parameters for :func:`wsss_kit.crf.get_params` (a set name such as
            ``"mctformer_seg"``/``"weakclip_retrain"``, a mapping, :class:`~wsss_kit.crf.CRFParams`): the
            aggregated probabilities are refined against the image and the CRF marginals returned.
        resize_align_corners: ``align_corners`` of the input resizing (MCTformer: True).
        crf_workers: CRF processes (:func:`wsss_kit.crf.dense_crf_batch`); 0/1 = this process.
        crf_backend: ``"pydensecrf"`` (the reference), ``"torch"`` (the batch at once on the images'
            device, :func:`wsss_kit.crf.dense_crf_torch`) or ``"auto"`` (torch on CUDA).

    Returns:
        float32 ``(B, K, H, W)`` on the images' device.

    Raises:
        ValueError / TypeError: bad images, scales, aggregate or model output (naming the scale);
        a bad ``crf`` raises :class:`~wsss_kit.errors.ConfigError`.
    """
    scales = tuple(float(s) for s in scales)
    _check(images, scales, aggregate)
    from .crf import get_params, resolve_backend

    crf_backend = resolve_backend(crf_backend, images.device)  # fail before the forward passes
    if crf is not None:
        crf = get_params(crf)
    batch = images.shape[0]

    def prepare(logits: torch.Tensor, view: View) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4 or logits.shape[0] != batch:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"the model must return logits (B={batch}, K, h, w) at {view.where}; got {got} (is it "
                             f"in eval mode? a multi-scale head returns a list of logits in training)")
        return logits.float()

    total = multiscale_flip(model, images, scales, flip, size=images.shape[-2:], rounding="floor",
                            resize_align_corners=resize_align_corners, prepare=prepare,
                            activation=lambda logits: logits.softmax(1), unflip="before_resize", aggregate=aggregate,
                            name="the model")
    if crf is None:
        return total
    from .crf import dense_crf_batch, dense_crf_torch, images_to_uint8

    if crf_backend == "torch":
        return dense_crf_torch(total, images, crf).to(images.device)
    refined = dense_crf_batch(list(images_to_uint8(images)), list(total.cpu().numpy()), crf, workers=crf_workers)
    return torch.stack([torch.from_numpy(r) for r in refined]).to(images.device)
