"""Input normalisation and compute precision for CLIP models."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "PRECISIONS", "Normalization",
           "autocast_for", "normalization_stats"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP's RGB mean (images in [0, 1])."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet's RGB mean, which WeakCLIP feeds its frozen CLIP with."""
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
"""Compute precisions: autocast dtype (weights stay float32); ``auto`` = fp16 on CUDA only."""

Normalization = str | tuple[Sequence[float], Sequence[float]]


def normalization_stats(spec: Normalization, model: nn.Module | None = None
                        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` for ``"clip"`` (the model's own preprocessing, else OpenAI's), ``"imagenet"``,
    or an explicit ``(mean, std)`` pair of 3 values each."""
    if isinstance(spec, str):
        if spec == "imagenet":
            return IMAGENET_MEAN, IMAGENET_STD
        if spec == "clip":
            visual = getattr(model, "visual", None)
            cfg = getattr(visual, "preprocess_cfg", None) or {}
            mean = cfg.get("mean") or getattr(visual, "image_mean", None) or CLIP_MEAN
            std = cfg.get("std") or getattr(visual, "image_std", None) or CLIP_STD
            return tuple(float(m) for m in mean), tuple(float(s) for s in std)
        raise ValueError(f"normalization must be 'clip', 'imagenet' or (mean, std), got {spec!r}")
    mean, std = spec
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"normalization (mean, std) needs 3 values each, got {spec!r}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def autocast_for(precision: str, device_type: str) -> AbstractContextManager[Any]:
    """The autocast context ``precision`` asks for on ``device_type``.

    ``fp32`` switches autocast off (even inside a caller's autocast), ``fp16``/``bf16`` switch it on
    with that dtype, ``auto`` is fp16 on CUDA and leaves the caller's state alone elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        precision = "fp16" if device_type == "cuda" else ""
    if not precision:
        return nullcontext()
    if precision == "fp32":
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
