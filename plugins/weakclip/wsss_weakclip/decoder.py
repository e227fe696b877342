"""Text-guided hierarchical decoder (paper Sec. 3.3.4, Fig. 5, Eq. 10).

The score map ``λ'`` ``(B, K, h, w)`` is resized (bilinear, ``align_corners=True``) to every
pyramid level and concatenated to the level's features (``C + K`` channels; official
``if_pyramid_queried_feature``). Then an FPN neck and an FPN head (mmsegmentation's ``FPN`` and
``FPNHead`` as configured by the official ``weakclip_vitb.py``):

* neck: per level a 1×1 lateral conv (``C + K`` → 256, with bias, no norm); top-down, each
  coarser lateral is resized (nearest) to the next finer one and added; per level a 3×3 conv
  (256 → 256, with bias, no norm, no activation);
* head: per level a branch of 3×3 Conv-BN-ReLU blocks, each followed by a ×2 bilinear upsampling
  (``align_corners=False``) except on the finest level, as many blocks as the level is coarser
  than the finest (1, 1, 2, 3); the branches are resized to the finest one and summed; then
  Dropout2d(0.1) and a 1×1 classifier → logits ``P`` at the finest level (1/4).

``score_concat="one"`` concatenates the score map to one level only (``score_concat_index``; the
official code's path when the pyramid-queried feature is off, DenseCLIP's way) and ``"none"``
to no level: decoders without text guidance, for ablations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pyramid import PatchConvTranspose2d, conv_transpose_2x2

__all__ = ["SCORE_CONCAT", "FPNHead", "FPNNeck", "ConvBNReLU", "TextGuidedDecoder", "concat_scores", "resized_scores"]

SCORE_CONCAT = ("all", "one", "none")
"""Where the score map joins the pyramid: every level (text-guided), one level, or none."""


def resized_scores(sizes: Sequence[Sequence[int]], scores: Tensor, mode: str = "all", index: int = 2,
                   dtype: torch.dtype | None = None) -> list[Tensor | None]:
    """``scores`` ``(B, K, h, w)`` resized bilinearly (``align_corners=True``) to the size of each pyramid
    level that takes it (``mode="all"``: every level; ``"one"``: level ``index``; ``"none"``: none),
    cast to ``dtype`` (default: its own); ``None`` for the others."""
    if mode not in SCORE_CONCAT:
        raise ValueError(f"score_concat must be one of {', '.join(SCORE_CONCAT)}, got {mode!r}")
    targets = range(len(sizes)) if mode == "all" else [index] if mode == "one" else []
    out: list[Tensor | None] = [None] * len(sizes)
    for i in targets:
        size = tuple(sizes[i])
        s = scores if tuple(scores.shape[-2:]) == size else F.interpolate(scores, size=size, mode="bilinear",
                                                                          align_corners=True)
        out[i] = s if dtype is None else s.to(dtype)
    return out


def concat_scores(levels: Sequence[Tensor], scores: Tensor, mode: str = "all", index: int = 2) -> list[Tensor]:
    """Concatenate ``scores`` ``(B, K, h, w)``, resized bilinearly (``align_corners=True``), to pyramid levels.

    ``mode="all"``: every level; ``"one"``: level ``index`` only; ``"none"``: no level. (The decoder
    itself never builds these tensors: :class:`FPNNeck` takes the resized scores beside the levels.)
    """
    extras = resized_scores([tuple(x.shape[-2:]) for x in levels], scores, mode, index)
    return [x if e is None else torch.cat([x, e.to(x.dtype)], dim=1) for x, e in zip(levels, extras)]


class ConvBNReLU(nn.Module):
    """3×3 convolution (no bias) → BatchNorm → ReLU (mmcv's ``ConvModule`` with BN + ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class FPNNeck(nn.Module):
    """Feature pyramid neck: 1×1 laterals, nearest top-down additions, 3×3 output convs (no norm).

    ``forward(levels)``: maps ``(B, in_channels[i], h_i, w_i)``, finest first → ``(B, out_channels, h_i, w_i)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.lateral = nn.ModuleList([nn.Conv2d(c, out_channels, 1) for c in self.in_channels])
        self.output = nn.ModuleList([nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in self.in_channels])

    def reset_parameters(self) -> None:
        """Official initialisation: Xavier-uniform weights, zero biases."""
        for conv in [*self.lateral, *self.output]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, levels: Sequence[Tensor], extras: Sequence[Tensor | None] | None = None,
                upsample: Sequence[PatchConvTranspose2d | None] | None = None) -> list[Tensor]:
        """Args:
            levels: ``(B, C_i, h_i, w_i)``, finest first.
            extras: per level ``None`` or channels that follow the level's own (the resized score
                map), at the level's output size; ``in_channels[i]`` counts both. The lateral conv
                of the two is the conv of their concatenation, computed per part (a 1×1 conv is
                linear in its channels), so the concatenated copy (50 MB at the finest level of a
                512² window) is never built.
            upsample: per level ``None`` or the 2×2 stride-2 transposed conv that would make the
                level from ``levels[i]`` (the pyramid adapter's last layer,
                :meth:`~wsss_weakclip.pyramid.PyramidAdapter.split_last`). Both it and the lateral
                conv are linear, so they run as one transposed conv with the composed weights
                straight to the neck's width (256 instead of 768 channels at the finest level).
        """
        if len(levels) != len(self.lateral):
            raise ValueError(f"FPNNeck expects {len(self.lateral)} levels, got {len(levels)}")
        extras = [None] * len(levels) if extras is None else list(extras)
        upsample = [None] * len(levels) if upsample is None else list(upsample)
        if len(extras) != len(levels) or len(upsample) != len(levels):
            raise ValueError(f"FPNNeck got {len(levels)} levels but {len(extras)} extras and {len(upsample)} "
                             f"upsampling layers")
        lat = [self._lateral(i, x, e, u) for i, (x, e, u) in enumerate(zip(levels, extras, upsample))]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=tuple(lat[i - 1].shape[-2:]), mode="nearest")
        return [conv(x) for conv, x in zip(self.output, lat)]

    def _lateral(self, i: int, x: Tensor, extra: Tensor | None, up: PatchConvTranspose2d | None) -> Tensor:
        conv = cast(nn.Conv2d, self.lateral[i])
        own = x.shape[1] if up is None else up.out_channels
        extra_channels = extra.shape[1] if extra is not None else 0
        if x.dim() != 4 or own + extra_channels != conv.in_channels:
            raise ValueError(f"FPNNeck level {i}: {own} + {extra_channels} channels, but its lateral conv takes "
                             f"{conv.in_channels}")
        if extra is None and up is None:
            return conv(x)
        if up is None:
            out = F.conv2d(x, conv.weight[:, :own], conv.bias)
        else:
            if up.in_channels != x.shape[1]:
                raise ValueError(f"FPNNeck level {i}: {x.shape[1]} channels into an upsampling layer that takes "
                                 f"{up.in_channels}")
            own_weight = conv.weight[:, :own, 0, 0]  # (out, mid): the lateral is 1x1
            composed = torch.einsum("cmab,om->coab", up.weight, own_weight)  # (in, out, 2, 2)
            bias = conv.bias if up.bias is None else (own_weight @ up.bias if conv.bias is None
                                                       else torch.addmv(conv.bias, own_weight, up.bias))
            out = conv_transpose_2x2(x, composed, bias)
        if extra is not None:
            out = out.add_(F.conv2d(extra, conv.weight[:, own:]))
        return out


class FPNHead(nn.Module):
    """Semantic-FPN head: per-level Conv-BN-ReLU (+ ×2 upsampling) branches, summed, dropout, 1×1 classifier.

    Args:
        in_channels: channels of each level (finest first).
        channels: branch width (official 256).
        num_classes: ``K``.
        strides: the levels' strides relative to any unit, finest first (only their ratios matter);
            level ``i`` gets ``max(1, log2(strides[i] / strides[0]))`` blocks.
        dropout: Dropout2d probability before the classifier.

    ``forward(levels) -> (B, K, h_0, w_0)``. Parameter names: ``branches.i.j.conv``, ``branches.i.j.bn``,
    ``classifier``.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int,
                 strides: Sequence[int] = (4, 8, 16, 32), dropout: float = 0.1) -> None:
        super().__init__()
        if len(strides) != len(in_channels):
            raise ValueError(f"FPNHead: {len(in_channels)} levels but {len(strides)} strides")
        if min(strides) != strides[0]:
            raise ValueError(f"FPNHead: the first level must be the finest; strides {tuple(strides)}")
        self.upsample = [s != strides[0] for s in strides]
        self.branches = nn.ModuleList()
        for c, s in zip(in_channels, strides):
            n = max(1, int(math.log2(s) - math.log2(strides[0])))
            self.branches.append(nn.ModuleList([ConvBNReLU(c if j == 0 else channels, channels) for j in range(n)]))
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def reset_parameters(self) -> None:
        """Official initialisation: convs Kaiming-normal (fan_out, ReLU), BN 1/0, classifier normal(0, 0.01)."""
        for i in range(len(self.branches)):
            for block in self._blocks(i):
                nn.init.kaiming_normal_(block.conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.ones_(block.bn.weight)
                nn.init.zeros_(block.bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:  # always (Conv2d's default bias=True); narrows the Optional
            nn.init.zeros_(self.classifier.bias)

    def _blocks(self, i: int) -> list[ConvBNReLU]:
        # nn.ModuleList is not generic (its items are typed nn.Module); branch i holds ConvBNReLU blocks
        return cast("list[ConvBNReLU]", list(cast(nn.ModuleList, self.branches[i])))

    def _branch(self, i: int, x: Tensor) -> Tensor:
        for block in self._blocks(i):
            x = block(x)
            if self.upsample[i]:
                x = F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear", align_corners=False)
        return x

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        if len(levels) != len(self.branches):
            raise ValueError(f"FPNHead expects {len(self.branches)} levels, got {len(levels)}")
        out = self._branch(0, levels[0])
        for i in range(1, len(levels)):
            y = self._branch(i, levels[i])
            if tuple(y.shape[-2:]) != tuple(out.shape[-2:]):
                y = F.interpolate(y, size=tuple(out.shape[-2:]), mode="bilinear", align_corners=False)
            out = out + y
        return self.classifier(self.dropout(out))


class TextGuidedDecoder(nn.Module):
    """Score map concatenated to the pyramid levels, FPN neck, FPN head → logits at the finest level.

    Args:
        width: ``C``, channels of every pyramid level (the ViT width).
        num_classes: ``K`` (the score map's channels and the logits' classes).
        channels: neck and head width (official 256).
        dropout: before the classifier (official 0.1).
        score_concat: ``"all"`` (text-guided, official), ``"one"`` or ``"none"`` (see the module docstring).
        score_concat_index: the level for ``score_concat="one"`` (official 2, the 1/16 level).

    ``forward(levels, scores)``: 4 maps ``(B, C, h_i, w_i)`` (finest first) and the score map
    ``(B, K, h, w)`` → logits ``(B, K, h_0, w_0)``.
    """

    def __init__(self, width: int, num_classes: int, channels: int = 256, dropout: float = 0.1, *,
                 score_concat: str = "all", score_concat_index: int = 2) -> None:
        super().__init__()
        if score_concat not in SCORE_CONCAT:
            raise ValueError(f"score_concat must be one of {', '.join(SCORE_CONCAT)}, got {score_concat!r}")
        if not 0 <= score_concat_index < 4:
            raise ValueError(f"score_concat_index must be 0..3, got {score_concat_index}")
        self.score_concat, self.score_concat_index = score_concat, int(score_concat_index)
        ins = [width + (num_classes if score_concat == "all" or (score_concat == "one" and i == score_concat_index)
                        else 0) for i in range(4)]
        self.neck = FPNNeck(ins, channels)
        self.head = FPNHead([channels] * 4, channels, num_classes, (4, 8, 16, 32), dropout)
        self.neck.reset_parameters()
        self.head.reset_parameters()

    def forward(self, levels: Sequence[Tensor], scores: Tensor,
                upsample: Sequence[PatchConvTranspose2d | None] | None = None) -> Tensor:
        """``upsample``: per level ``None`` or the layer that makes the level from ``levels[i]``
        (see :meth:`FPNNeck.forward`); such a level is twice the size of ``levels[i]``."""
        ups = [None] * len(levels) if upsample is None else list(upsample)
        sizes = [tuple(x.shape[-2:]) if u is None else (2 * x.shape[-2], 2 * x.shape[-1]) for x, u in zip(levels, ups)]
        extras = resized_scores(sizes, scores, self.score_concat, self.score_concat_index, dtype=levels[0].dtype)
        return self.head(self.neck(levels, extras, ups))

    def extra_repr(self) -> str:
        return f"score_concat={self.score_concat!r}, score_concat_index={self.score_concat_index}"
