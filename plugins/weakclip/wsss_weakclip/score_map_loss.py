"""WeakCLIP's auxiliary cross-entropy on the text-to-pixel score map (official code; not in the paper)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

import wsss_kit
from wsss_kit.interfaces import IGNORE_INDEX

from .loss_inputs import check_logits, check_seeds

__all__ = ["DEFAULT_TEMPERATURE", "ScoreMapLoss", "score_map_loss"]

DEFAULT_TEMPERATURE = 0.07
"""The official ``tau``: the cosine score map is divided by it before the cross-entropy."""

Average = Literal["all", "valid"]


def score_map_loss(
    score_map: Tensor,
    seeds: Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    ignore_index: int = IGNORE_INDEX,
    average: Average = "all",
) -> Tensor:
    """Cross-entropy of the seed mask against ``score_map / temperature``.

    The official code passes ``score_map / tau`` through an identity head whose mmsegmentation
    loss resizes it (bilinear, ``align_corners=False``) to the seed mask's size and applies a
    cross-entropy with ``ignore_index=255`` and the mmseg 0.x default reduction: the **mean over
    all pixels**, ignored ones counting as 0 (``average="all"``). ``average="valid"`` divides by
    the non-ignored pixels instead (PyTorch's convention). The official weight (0.4) is applied
    by the caller.

    Args:
        score_map: ``(B, K, h, w)`` cosine similarities of pixel and class-text embeddings
            (1/16 resolution), channel 0 = background.
        seeds: ``(B, H, W)`` int64 seed mask, class ids ``0..K-1`` or ``ignore_index``.
        temperature: the divisor (official 0.07), > 0.
        ignore_index: the mask's ignore value.
        average: ``"all"`` (official) or ``"valid"``, see above.

    Returns:
        a scalar attached to ``score_map``'s graph; ``0`` when every pixel is ignored.

    Raises:
        TypeError / ValueError: as :func:`~wsss_weakclip.seed_loss.balanced_seed_loss`, and for
            a non-positive temperature or an unknown ``average``.
    """
    score_map = check_logits(score_map, "score_map")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    if average not in ("all", "valid"):
        raise ValueError(f"average must be 'all' (official) or 'valid', got {average!r}")
    batch, num_classes = score_map.shape[:2]
    seeds = check_seeds(seeds, num_classes, batch, (score_map.shape[-2], score_map.shape[-1]), "the score map",
                        ignore_index)
    if score_map.dtype not in (torch.float32, torch.float64):
        score_map = score_map.float()
    logits = score_map / temperature
    if logits.shape[-2:] != seeds.shape[-2:]:
        logits = F.interpolate(logits, size=tuple(seeds.shape[-2:]), mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(logits, seeds, ignore_index=ignore_index, reduction="none")
    if average == "all":
        return per_pixel.mean()
    valid = (seeds != ignore_index).sum()
    return per_pixel.sum() / valid.clamp_min(1).to(per_pixel.dtype)


class ScoreMapLoss(wsss_kit.Loss):
    """Module form of :func:`score_map_loss`.

    ``forward(score_map (B, K, h, w), seeds (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(
        self,
        temperature: float = DEFAULT_TEMPERATURE,
        ignore_index: int = IGNORE_INDEX,
        average: Average = "all",
    ) -> None:
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if average not in ("all", "valid"):
            raise ValueError(f"average must be 'all' (official) or 'valid', got {average!r}")
        self.temperature = float(temperature)
        self.ignore_index = int(ignore_index)
        self.average: Average = average

    def forward(self, score_map: Tensor, seeds: Tensor) -> Tensor:
        return score_map_loss(score_map, seeds, self.temperature, self.ignore_index, self.average)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, ignore_index={self.ignore_index}, average={self.average!r}"
