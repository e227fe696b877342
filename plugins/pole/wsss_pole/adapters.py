"""POLE's weakly supervised adapters (paper Sec. 3.4, Eqs. 7–8; Table 4 rows B–D).

An adapter is a bottleneck MLP ``A`` on a CLIP embedding ``v``; the adapted embedding is the
ratio mix

    v* = r · A(v) + (1 − r) · v                                  (Eqs. 7 and 8)

computed *before* L2 normalisation (normalise ``v*`` afterwards, as the similarity needs). POLE
uses one adapter on the image side (``A_v``, ``r_v``) and one on the text side (``A_t``, ``r_t``),
for the object and background matching terms, not for the co-occurring background term.

``A`` follows POLE's code: ``Linear(D, D/4, no bias) → ReLU → Linear(D/4, D, no bias) → ReLU``
(512 → 128 → 512 for ViT-B/32). The paper writes ``A(v) = ReLU(v W1) W2``, without the final
ReLU; ``final_relu=False`` gives the paper's form. The linear layers keep PyTorch's default
initialisation (the paper does not give one).

Modes of :class:`AdaptedFeatures` (POLE Table 4):

=========  ============================================  ================
mode       ratio ``r``                                   Table 4 row
=========  ============================================  ================
``none``   no adapter: ``v* = v``                        B (73.6)
``fixed``  a constant scalar (default 0.2), not learnt   C (73.8)
``scalar`` one learnable scalar (initial 0.2)            — (extra)
``vector`` a learnable ``D``-vector, all 0.2 at start    D (74.2), POLE
=========  ============================================  ================

The ratio is not clamped to [0, 1] (no clamp is recorded for POLE's code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ADAPTER_MODES", "AdaptedFeatures", "Adapter", "adapter_mlp", "adapted_features", "ratio_mix"]

ADAPTER_MODES = ("none", "fixed", "scalar", "vector")


def adapter_mlp(features: Tensor, weight1: Tensor, weight2: Tensor, bias1: Tensor | None = None,
                bias2: Tensor | None = None, final_relu: bool = True) -> Tensor:
    """``A(v) = ReLU(ReLU(v W1ᵀ + b1) W2ᵀ + b2)`` (the last ReLU only with ``final_relu``).

    Args:
        features: ``(..., D)``.
        weight1: ``(H, D)``; weight2: ``(D, H)`` (``nn.Linear`` layout); biases ``(H,)``, ``(D,)`` or ``None``.

    Returns:
        ``(..., D)``.
    """
    if weight1.dim() != 2 or weight2.dim() != 2 or weight2.shape != weight1.shape[::-1]:
        raise ValueError(f"adapter weights must be (H, D) and (D, H), got {tuple(weight1.shape)} and "
                         f"{tuple(weight2.shape)}")
    if features.shape[-1] != weight1.shape[1]:
        raise ValueError(f"features have last dimension {features.shape[-1]}, the adapter expects {weight1.shape[1]}")
    out = F.linear(F.relu(F.linear(features, weight1, bias1)), weight2, bias2)
    return F.relu(out) if final_relu else out


def ratio_mix(features: Tensor, adapted: Tensor, ratio: Tensor | float) -> Tensor:
    """``r · adapted + (1 − r) · features`` (Eqs. 7–8).

    Args:
        features: ``v``, ``(..., D)``.
        adapted: ``A(v)``, ``(..., D)``.
        ratio: ``r``: a float, a scalar tensor, or a ``(D,)`` tensor (one ratio per channel).

    Returns:
        ``(..., D)``, not normalised.
    """
    if features.shape != adapted.shape:
        raise ValueError(f"features {tuple(features.shape)} and adapted features {tuple(adapted.shape)} must "
                         f"have the same shape")
    if isinstance(ratio, Tensor) and ratio.dim() > 0 and ratio.shape != features.shape[-1:]:
        raise ValueError(f"ratio must be a scalar or ({features.shape[-1]},), got {tuple(ratio.shape)}")
    return ratio * adapted + (1 - ratio) * features


def adapted_features(features: Tensor, adapter: nn.Module | None, ratio: Tensor | float) -> Tensor:
    """``ratio_mix(v, adapter(v), ratio)``; ``adapter=None`` returns ``features`` unchanged."""
    if adapter is None:
        return features
    return ratio_mix(features, adapter(features), ratio)


class Adapter(nn.Module):
    """POLE's adapter MLP ``A``: ``Linear(D, H) → ReLU → Linear(H, D) → ReLU``.

    Args:
        dim: ``D``, the embedding size (512 for ViT-B/32).
        hidden: ``H``; default ``D // 4`` (128).
        bias: linear biases (POLE: none).
        final_relu: the ReLU after the second layer (POLE's code: yes; the paper's Eq.: no).

    Shapes: ``(..., D) → (..., D)``.
    """

    def __init__(self, dim: int, hidden: int | None = None, bias: bool = False, final_relu: bool = True) -> None:
        super().__init__()
        hidden = dim // 4 if hidden is None else hidden
        if dim < 1 or hidden < 1:
            raise ValueError(f"Adapter needs dim >= 1 and hidden >= 1, got dim={dim}, hidden={hidden}")
        self.dim, self.hidden, self.final_relu = int(dim), int(hidden), bool(final_relu)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, features: Tensor) -> Tensor:
        return adapter_mlp(features, self.fc1.weight, self.fc2.weight, self.fc1.bias, self.fc2.bias,
                           self.final_relu)

    def extra_repr(self) -> str:
        return f"final_relu={self.final_relu}"


class AdaptedFeatures(nn.Module):
    """``v* = r · A(v) + (1 − r) · v`` with POLE's adapter and a ratio of the chosen ``mode``.

    Args:
        dim: ``D``, the embedding size.
        mode: ``"none"``, ``"fixed"``, ``"scalar"`` or ``"vector"`` (see the module docstring).
        ratio: the initial (or fixed) ratio, 0.2 as in POLE.
        hidden, bias, final_relu: see :class:`Adapter`.

    Shapes: ``(..., D) → (..., D)``, not normalised (apply ``F.normalize`` after). ``ratio`` is a
    parameter (``scalar``: shape ``()``, ``vector``: ``(D,)``), a buffer (``fixed``: ``()``), or
    ``None`` (``none``).
    """

    ratio: Tensor | None  # a Parameter ("vector", "scalar"), a buffer ("fixed") or None ("none")

    def __init__(self, dim: int, mode: str = "vector", ratio: float = 0.2, hidden: int | None = None,
                 bias: bool = False, final_relu: bool = True) -> None:
        super().__init__()
        if mode not in ADAPTER_MODES:
            raise ValueError(f"adapter mode must be one of {', '.join(ADAPTER_MODES)}, got {mode!r}")
        self.dim, self.mode = int(dim), mode
        self.adapter = None if mode == "none" else Adapter(dim, hidden, bias=bias, final_relu=final_relu)
        if mode == "vector":
            self.ratio = nn.Parameter(torch.full((dim,), float(ratio)))
        elif mode == "scalar":
            self.ratio = nn.Parameter(torch.tensor(float(ratio)))
        elif mode == "fixed":
            self.register_buffer("ratio", torch.tensor(float(ratio)))
        else:
            self.ratio = None

    def forward(self, features: Tensor) -> Tensor:
        if features.shape[-1] != self.dim:
            raise ValueError(f"features have last dimension {features.shape[-1]}, but AdaptedFeatures was built "
                             f"for {self.dim}")
        if self.adapter is None or self.ratio is None:  # mode "none": both are None
            return features
        return adapted_features(features, self.adapter, self.ratio)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mode={self.mode!r}"
