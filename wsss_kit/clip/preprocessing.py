"""Input normalisation and compute precision for CLIP models."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

__all__ = ["AUTO_BF16_MIN_WIDTH", "CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "PRECISIONS",
           "Normalization", "autocast_for", "cpu_has_fast_bf16", "normalization_stats", "resolve_precision"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP's RGB mean (images in [0, 1])."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet's RGB mean, which WeakCLIP feeds its frozen CLIP with."""
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
"""Compute precisions: autocast dtype (weights stay float32); ``auto``: see :func:`resolve_precision`."""
AUTO_BF16_MIN_WIDTH = 512
"""The narrowest tower (ViT width) that ``auto`` runs in bf16 on a CPU with AMX.

Measured on a 2-core Xeon with AMX (torch 2.14, 1 thread, fused attention; fp32 time / bf16
time, outputs within 1e-2 relative, cosine > 0.9999): ViT-B/16 224 px batch 2 forward 2.97×,
forward + backward to the images 2.53×; ViT-B/32 batch 6 2.66× / 1.93×; the embedded world's
width-128 CLIP 1.85× / 1.01×; the width-64 test CLIP 0.72× (slower: the casts cost more than the
small matrix products gain). Below this width ``auto`` keeps fp32.
"""

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


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles with bf16), where oneDNN's
    bf16 matrix products run several times faster than fp32. Without AMX (AVX-512 BF16 alone, or
    AVX2) bf16 autocast gains little or loses on the casts."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:  # pragma: no cover - a torch build without the CPU-feature probe
        return False


def resolve_precision(precision: str, device_type: str, width: int | None = None) -> str:
    """The precision ``precision`` stands for on ``device_type``: ``"fp32"``, ``"fp16"``, ``"bf16"``,
    or ``""`` (``auto`` where no choice is made: the caller's autocast state applies).

    ``auto`` picks the fastest precision whose outputs stay close to fp32 (relative error ~1e-2):
    fp16 on CUDA; bf16 on a CPU with AMX (:func:`cpu_has_fast_bf16`) for towers at least
    :data:`AUTO_BF16_MIN_WIDTH` wide (``width``: the ViT width; ``None`` = unknown, taken as wide
    enough); otherwise ``""`` (fp32 unless the caller runs under autocast). fp16 on CPU is never
    chosen (no faster than fp32 there), nor bf16 without AMX: AVX-512 alone emulates it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        return "fp16"
    if device_type == "cpu" and cpu_has_fast_bf16() and (width is None or int(width) >= AUTO_BF16_MIN_WIDTH):
        return "bf16"
    return ""


def autocast_for(precision: str, device_type: str, width: int | None = None) -> AbstractContextManager[Any]:
    """The autocast context ``precision`` asks for on ``device_type``.

    ``fp32`` switches autocast off (even inside a caller's autocast), ``fp16``/``bf16`` switch it on
    with that dtype, ``auto`` is what :func:`resolve_precision` picks for the device and the
    tower's ``width`` (fp16 on CUDA, bf16 on CPUs with AMX for wide towers), and leaves the caller's
    state alone where it picks nothing.
    """
    precision = resolve_precision(precision, device_type, width)
    if not precision:
        return nullcontext()
    if precision == "fp32":
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)
