"""Which space the images a network receives are in: ``input_space="unit"`` or ``"normalized"``.

Every CAM network and every CLIP user in wsss_kit normalises its input itself: it takes RGB
images in [0, 1] (``"unit"``, the default) and computes ``(x − mean) / std`` with its own
mean/std. The official data loaders of the papers (IRN, CLIMS, POLE, MCTformer, WeakCLIP) hand
their networks images that are *already* normalised that way; ``input_space="normalized"`` says
the images are such tensors, so the network skips its own normalisation. A network that also
feeds CLIP with its images converts them from its own normalisation to the one its CLIP side
wants (:func:`convert_normalization`: un-normalise with the network's mean/std, re-normalise
with CLIP's).

The switch is for users feeding their own tensors; wsss_kit's datasets yield images in [0, 1].

::

    from wsss_kit.input_space import INPUT_SPACES, check_input_space, normalize_input

    space = check_input_space(space)                    # "unit" | "normalized", else ValueError
    x = normalize_input(images, space, mean, std)        # what the backbone is fed
    unit = to_unit(images, space, mean, std)             # images in [0, 1] again
    clip_x = convert_normalization(images, (mean, std), (CLIP_MEAN, CLIP_STD))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["INPUT_SPACES", "InputSpace", "Stats", "check_input_space", "convert_normalization",
           "normalize_input", "to_unit"]

INPUT_SPACES = ("unit", "normalized")
"""``unit``: RGB in [0, 1]; ``normalized``: already ``(x − mean) / std`` with the receiver's own
mean/std (the way the official data loaders feed the networks)."""

InputSpace = Literal["unit", "normalized"]

Stats = tuple[Sequence[float], Sequence[float]] | tuple[Tensor, Tensor]
"""``(mean, std)``: 3 values each, or tensors broadcastable to ``(B, 3, H, W)`` (e.g. ``(1, 3, 1, 1)``)."""


def check_input_space(value: object, argument: str = "input_space") -> str:
    """``value`` if it is one of :data:`INPUT_SPACES`, else a ``ValueError`` naming ``argument``,
    the choices and what came."""
    if not isinstance(value, str) or value not in INPUT_SPACES:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, INPUT_SPACES))} ('unit': RGB in [0, 1]; "
                         f"'normalized': already (x - mean) / std with the network's own mean/std); got {value!r}")
    return value


def _stat(values: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    t = torch.as_tensor(values, dtype=like.dtype if like.is_floating_point() else torch.float32,
                        device=like.device)
    if t.dim() == 1:
        if t.numel() != like.shape[1]:
            raise ValueError(f"mean/std need one value per channel ({like.shape[1]}), got {t.numel()}")
        t = t.view(1, -1, 1, 1)
    return t


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating point tensor (B, C, H, W); got {shape}")


def normalize_input(images: Tensor, input_space: str, mean: Sequence[float] | Tensor,
                    std: Sequence[float] | Tensor) -> Tensor:
    """The network input ``(B, 3, H, W)``: ``(images − mean) / std`` for ``"unit"`` images,
    ``images`` unchanged for ``"normalized"`` ones (already normalised with this ``mean``/``std``)."""
    check_input_space(input_space)
    if input_space == "normalized":
        return images
    _check_images(images)
    return (images - _stat(mean, images)) / _stat(std, images)


def to_unit(images: Tensor, input_space: str, mean: Sequence[float] | Tensor,
            std: Sequence[float] | Tensor) -> Tensor:
    """The images in [0, 1] ``(B, 3, H, W)``: unchanged for ``"unit"``, ``images · std + mean`` for
    ``"normalized"`` ones (normalised with this ``mean``/``std``)."""
    check_input_space(input_space)
    if input_space == "unit":
        return images
    _check_images(images)
    return images * _stat(std, images) + _stat(mean, images)


def convert_normalization(images: Tensor, source: Stats | None, target: Stats | None) -> Tensor:
    """Images normalised with ``source = (mean, std)`` → normalised with ``target = (mean, std)``.

    ``None`` stands for the unit space ([0, 1], no normalisation) on either side. One affine map
    per channel, ``x · (σ_s / σ_t) + (μ_s − μ_t) / σ_t``: e.g. ImageNet-normalised CAM-network
    input → CLIP's normalisation. Shapes: ``(B, C, H, W) → (B, C, H, W)``, differentiable.
    """
    _check_images(images)
    if source is None and target is None:
        return images
    if source is None:
        mean_t, std_t = (_stat(v, images) for v in target)  # type: ignore[union-attr]
        return (images - mean_t) / std_t
    mean_s, std_s = (_stat(v, images) for v in source)
    if target is None:
        return images * std_s + mean_s
    mean_t, std_t = (_stat(v, images) for v in target)
    return images * (std_s / std_t) + (mean_s - mean_t) / std_t
