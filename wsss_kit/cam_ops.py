"""Operations on class activation maps shared by every CAM generator.

A CAM plugin supplies one function, ``raw_fn(images) -> (B, C, h, w)`` unnormalised class maps at
its own feature resolution; :func:`multiscale_cams` does the rest the way the CAM papers do at
inference time (IRN/CLIMS, MCTformer): resize the images to every scale, optionally add the
horizontally flipped pass, rectify, bring every map back to the image size, sum, zero the classes
absent from the image-level labels and normalise each map to [0, 1].
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .multiscale import View, multiscale_flip
from .shapes import check_shape

__all__ = ["NORMALIZE_MODES", "RawCAMFn", "class_argmax", "multiscale_cams", "normalize_cams", "resize_cams"]

NORMALIZE_MODES = ("max", "minmax")
"""Per-image, per-class normalisations accepted by :func:`normalize_cams`."""

RawCAMFn = Callable[[torch.Tensor], torch.Tensor]


def normalize_cams(cams: torch.Tensor, mode: str = "max", eps: float = 1e-5) -> torch.Tensor:
    """Normalise every map of every image on its own.

    Args:
        cams: ``(B, C, H, W)`` non-negative maps (for ``"max"``) or any maps (for ``"minmax"``).
        mode: ``"max"``: ``x / (max(x) + eps)`` (IRN, CLIMS); ``"minmax"``:
            ``(x - min(x)) / (max(x) - min(x) + eps)`` (MCTformer).
        eps: keeps all-zero maps at zero instead of dividing by zero.

    Returns:
        ``(B, C, H, W)``, in [0, 1) when ``cams`` is non-negative (``"max"``) or always (``"minmax"``).
    """
    check_shape(cams, "B C H W", "cams", note="(a 4-D tensor)")
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"normalize mode must be one of {', '.join(NORMALIZE_MODES)}; got {mode!r}")
    flat = cams.flatten(2)
    high = flat.amax(dim=2)[..., None, None]
    if mode == "max":
        return cams / (high + eps)
    low = flat.amin(dim=2)[..., None, None]
    return (cams - low).div_(high - low + eps)  # in place: one (B, C, H, W) allocation, not two


def resize_cams(
    cams: torch.Tensor, size: tuple[int, int] | Sequence[int], align_corners: bool = False
) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` maps to ``size = (H, W)``; a no-op when already that size."""
    check_shape(cams, "B C H W", "cams", note="(a 4-D tensor)")
    size = _check_size(size)
    if tuple(cams.shape[-2:]) == size:
        return cams
    return F.interpolate(cams, size=size, mode="bilinear", align_corners=align_corners)


def multiscale_cams(
    raw_fn: RawCAMFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    normalize: str = "max",
    relu: bool = True,
    eps: float = 1e-5,
    upsample_stride: int | None = None,
    batch_flip: bool = False,
) -> torch.Tensor:
    """Multi-scale (and flip) aggregated CAMs at the image size.

    For every scale ``s`` the images are resized to ``round(s·H) × round(s·W)`` (bilinear,
    ``align_corners=False``) and ``raw_fn`` gives ``(B, C, h, w)`` maps; those are rectified (when
    ``relu``), resized back to ``H × W`` and summed; with ``flip`` the mirrored images add their maps,
    mirrored back. The sum is multiplied by ``labels`` (absent classes become exactly 0) and
    normalised per image and class with :func:`normalize_cams`.

    Gradients flow through ``raw_fn``; wrap the call in ``torch.no_grad()`` for inference.

    Args:
        raw_fn: images ``(B, 3, h', w')`` → unnormalised maps ``(B, C, h, w)``.
        images: ``(B, 3, H, W)``; passed to ``raw_fn`` as they are, apart from resizing.
        labels: ``(B, C)`` multi-hot (any non-negative weights are accepted).
        scales: positive resize factors, e.g. ``(1.0, 0.5, 1.5, 2.0)``.
        flip: also run every scale on the horizontally flipped images.
        normalize: ``"max"`` or ``"minmax"``, see :func:`normalize_cams`.
        relu: rectify every pass before summation.
        eps: added to the normaliser, see :func:`normalize_cams` (IRN/CLIMS use 1e-5,
            MCTformer 1e-8).
        upsample_stride: ``None`` resizes every pass straight to ``H × W``. An integer ``s``
            follows IRN/CLIMS's "high-res" CAM instead: every pass is resized to
            ``(ceil(H/s)·s, ceil(W/s)·s)``, summed, and the top-left ``H × W`` is kept.
        batch_flip: with ``flip``, run every scale and its mirror as one batch of ``2B`` through
            ``raw_fn`` (same maps, one call; for networks in eval mode), see
            :func:`wsss_kit.multiscale.multiscale_flip`.

    Returns:
        ``(B, C, H, W)`` float in [0, 1], zero where ``labels`` is 0.
    """
    check_shape(images, "B 3 H W", "images")
    batch, _, height, width = images.shape
    check_shape(labels, "B C", "labels", sizes={"B": batch}, note="(the images' batch size)")
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {normalize!r}")
    empty = torch.nonzero(~(labels > 0).any(dim=1)).flatten().tolist()
    if empty:
        raise ValueError(
            f"image(s) {empty} of the batch have an empty label set: a CAM exists only for classes "
            f"present in the image; drop images without foreground labels before computing CAMs"
        )
    scales = tuple(float(s) for s in scales)
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers; got {scales}")

    if upsample_stride is not None and (isinstance(upsample_stride, bool) or int(upsample_stride) < 1):
        raise ValueError(f"upsample_stride must be None or a positive int; got {upsample_stride!r}")
    if upsample_stride is None:
        out_size = (height, width)
    else:
        stride = int(upsample_stride)
        out_size = (-(-height // stride) * stride, -(-width // stride) * stride)

    num_classes = labels.shape[1]

    def prepare(maps: torch.Tensor, view: View) -> torch.Tensor:
        if maps.dim() != 4 or maps.shape[0] != batch or maps.shape[1] != num_classes:
            raise ValueError(
                f"raw_fn must return (B, C, h, w) = ({batch}, {num_classes}, h, w) matching images and "
                f"labels; got shape {tuple(maps.shape)} at scale {view.scale}"
            )
        return F.relu(maps) if relu else maps

    total = multiscale_flip(raw_fn, images, scales, flip, size=out_size, rounding="round", prepare=prepare,
                            unflip="after_resize", aggregate="sum", name="raw_fn",
                            batch_flip=batch_flip)
    total = total[..., :height, :width]
    mask = labels.to(total.dtype)[:, :, None, None]
    cams = normalize_cams(total * mask, normalize, eps=eps)
    # minmax shifts by the minimum, which is the only way a masked class could become non-zero.
    return cams.mul_((mask != 0).to(cams.dtype))  # cams is normalize_cams' own new tensor


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    out = tuple(int(s) for s in size)
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"size must be (H, W) with positive integers; got {tuple(size)}")
    return out


def class_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(1)`` for class scores ``(B, K, H, W)`` → int64 ``(B, H, W)``, the same values
    (the first maximum on ties, a NaN wins as in torch), faster on CPU.

    On CPU, torch's argmax over dim 1 of a contiguous ``(B, K, H, W)`` tensor strides across the
    K planes for every pixel (44 ms for 16 × 6 × 128², one thread); a running maximum over the K
    planes reads each plane once (11 ms). Other devices and shapes use ``argmax`` itself.
    """
    if scores.dim() != 4 or scores.device.type != "cpu" or scores.shape[1] < 2 or not scores.is_floating_point():
        return scores.argmax(1)
    if bool(torch.isnan(scores).any()):
        return scores.argmax(1)
    best = scores[:, 0].clone()
    index = torch.zeros(best.shape, dtype=torch.long)
    for k in range(1, scores.shape[1]):
        plane = scores[:, k]
        index.masked_fill_(plane > best, k)  # strictly greater: an earlier class keeps a tie
        torch.maximum(best, plane, out=best)
    return index
