"""The pieces of POLE's selection: masking an image by a CAM, CLIP's input, cosine scores.

See :mod:`wsss_pole.synonyms` for the procedure and what is our reading of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from wsss_kit.shapes import check_shape

__all__ = ["RESIZE_MODES", "candidate_similarities", "clip_input", "mask_image"]

RESIZE_MODES = ("clip", "stretch")
"""How a masked image becomes CLIP's input: CLIP's own preprocessing, or a plain resize."""


def mask_image(image: Tensor, cams: Tensor) -> Tensor:
    """``M_k = X · P_k`` for every CAM: the image masked by each map, in pixel space.

    Args:
        image: ``(3, H, W)`` RGB in [0, 1].
        cams: ``(K, h, w)`` in [0, 1] (clamped); bilinearly resized to ``(H, W)`` when ``(h, w)`` differs.

    Returns:
        ``(K, 3, H, W)`` in [0, 1].
    """
    check_shape(image, "3 H W", "image", note="RGB in [0, 1]")
    check_shape(cams, "K h w", "cams")
    cams = cams.to(device=image.device, dtype=image.dtype)
    if cams.shape[-2:] != image.shape[-2:]:
        cams = F.interpolate(cams[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    return image[None] * cams.clamp(0, 1)[:, None]


def clip_input(images: Tensor, size: int | Sequence[int], resize: str = "clip") -> Tensor:
    """Resize images to CLIP's input size, in [0, 1] (normalisation happens in ``encode_image``).

    Args:
        images: ``(K, 3, H, W)`` in [0, 1].
        size: the model's input size ``S`` or ``(S_h, S_w)``.
        resize: ``"clip"``: CLIP's own preprocessing, shorter side to ``S`` (antialiased bicubic,
            torchvision's size rounding) then a centre crop; ``"stretch"``: bilinear resize of the
            whole image to ``S × S``.

    Returns:
        ``(K, 3, S_h, S_w)`` in [0, 1].
    """
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    h, w = images.shape[-2:]
    if resize == "stretch":
        if (h, w) == (th, tw):
            return images
        return F.interpolate(images, size=(th, tw), mode="bilinear", align_corners=False).clamp(0, 1)
    if h <= w:  # torchvision Resize(int): the shorter side becomes S, the longer is truncated
        nh, nw = th, max(tw, int(th * w / h))
    else:
        nh, nw = max(th, int(tw * h / w)), tw
    if (nh, nw) != (h, w):
        images = F.interpolate(images, size=(nh, nw), mode="bicubic", align_corners=False,
                               antialias=True).clamp(0, 1)
    top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
    return images[..., top:top + th, left:left + tw]


def candidate_similarities(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """Cosine similarities (Eq. 6) between image embeddings ``(N, E)`` and candidates ``(M, E)``: ``(N, M)``."""
    if image_embeddings.dim() != 2 or text_embeddings.dim() != 2 or \
            image_embeddings.shape[1] != text_embeddings.shape[1]:
        raise ValueError(f"expected image embeddings (N, E) and text embeddings (M, E), got "
                         f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    return F.normalize(image_embeddings.float(), dim=-1) @ F.normalize(text_embeddings.float(), dim=-1).T
