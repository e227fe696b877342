"""Zero-shot scoring: cosine similarity of CLIP image embeddings with prompt embeddings.

This is how CLIP classifies without training (Radford et al. 2021, Sec. 3.1.2): each prompt
(``"a photo of a boat."``) is encoded once, and an image's score for it is the cosine of the two
embeddings. For multi-label data each prompt is scored on its own, so the columns rank images per
prompt (their average precision is the zero-shot multi-label mAP); no softmax over prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..shapes import check_shape
from .model import CLIPModel

__all__ = ["zero_shot_scores"]


@torch.no_grad()
def zero_shot_scores(clip: CLIPModel, images: Tensor, prompts: Sequence[str], batch_size: int = 64) -> Tensor:
    """Cosine similarities of every image with every prompt.

    Args:
        clip: a :class:`CLIPModel` (its own tokenizer encodes the prompts).
        images: ``(N, 3, H, W)`` RGB in ``[0, 1]`` (float) or ``uint8`` in ``[0, 255]``.
        prompts: ``K`` full prompt strings, e.g. ``["a photo of a ball.", "a photo of water."]``.
        batch_size: images encoded per forward pass.

    Returns:
        float32 ``(N, K)`` in ``[-1, 1]`` on the images' device.

    Raises:
        ValueError: no prompts, an empty prompt, images not ``(N, 3, H, W)``, or ``batch_size < 1``.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise ValueError(f"zero_shot_scores: prompts must be a non-empty list of non-empty strings, got {prompts!r}")
    check_shape(images, "N 3 H W", "zero_shot_scores: images")
    if batch_size < 1:
        raise ValueError(f"zero_shot_scores: batch_size must be >= 1, got {batch_size}")
    was_training = clip.training
    clip.eval()  # a model being trained is scored as it will be used
    try:
        text = F.normalize(clip.encode_text(prompts), dim=-1)
        device = text.device
        out = []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].to(device)
            chunk = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk.float()
            out.append(F.normalize(clip.encode_image(chunk), dim=-1) @ text.T)
    finally:
        clip.train(was_training)
    return torch.cat(out).to(images.device)
