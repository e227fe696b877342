"""WideResNet-38 ("ResNet38", Wu et al., *Wider or Deeper*), the dilated output-stride-8 variant of
PSA, MCTformer and WeakCLIP's retrains.

Structure (facts from jiwoon-ahn/psa ``network/resnet38d.py``, which MCTformer's
``seg/network/resnet38_seg.py`` subclasses), written for any width and depth:

* ``stem``: a 3×3 convolution, stride 1, no bias, no normalisation after it (``conv1a``).
* four stages of pre-activation basic blocks (``b2``…``b5``): BN → ReLU → [3×3 conv (stride) →
  BN → ReLU → 3×3 conv], plus the input, or a 1×1 projection of the *activated* input where the
  shape changes. Stages 2–4 have stride 2 (output stride 8); stage 5 has stride 1 and dilation
  2 (its first block's first convolution has dilation 1).
* two stages of one pre-activation bottleneck each (``b6``, ``b7``): BN → ReLU → 1×1 (C/4) →
  BN → ReLU → Dropout2d → 3×3 dilation 4 (C/2) → BN → ReLU → Dropout2d → 1×1 (C), plus a 1×1
  projection of the activated input (always present in the official code); dropout 0.3 and 0.5.
* ``norm_out`` + ReLU (``bn7``): 4096 channels at 1/8 of the input.

Names here → official names: ``stem`` = ``conv1a``; ``stages.{k}.{i}`` = ``b{k+2}`` (``i = 0``)
or ``b{k+2}_{i}``; inside a block ``norm1/conv1/norm2/conv2/norm3/conv3/shortcut`` =
``bn_branch2a/conv_branch2a/bn_branch2b1/conv_branch2b1/bn_branch2b2/conv_branch2b2/conv_branch1``;
``norm_out`` = ``bn7``. :mod:`wsss_deeplab.convert` maps the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "BottleneckBlock", "WideResNet38", "block_names"]

WR38_WIDTHS = ((128, 128), (256, 256), (512, 512), (512, 1024))
"""``(mid, out)`` channels of the basic-block stages ``b2``…``b5``."""
WR38_DEPTHS = (3, 3, 6, 3)
"""Blocks per basic stage (``b2`` has ``b2, b2_1, b2_2``; ``b4`` has ``b4`` … ``b4_5``)."""
WR38_BOTTLENECK_WIDTHS = (2048, 4096)
"""Output channels of the bottleneck stages ``b6`` and ``b7``."""
WR38_DROPOUTS = (0.3, 0.5)


class BasicBlock(nn.Module):
    """Pre-activation block ``y = shortcut(a) + conv2(relu(norm2(conv1(a))))``, ``a = relu(norm1(x))``;
    the shortcut is ``x`` itself when the shape is kept, else a 1×1 convolution of ``a``."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int | None = None) -> None:
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, stride, padding=first, dilation=first, bias=False)
        self.norm2 = nn.BatchNorm2d(mid_ch)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.same_shape = in_ch == out_ch and stride == 1
        self.shortcut = None if self.same_shape else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.norm1(x))
        branch = self.conv2(F.relu(self.norm2(self.conv1(a))))
        return (x if self.shortcut is None else self.shortcut(a)) + branch


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck ``in → out/4 (1×1) → out/2 (3×3, dilated) → out (1×1)`` with
    Dropout2d before the last two convolutions and a 1×1 projection shortcut of the activated input."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if out_ch % 4:
            raise ValueError(f"a bottleneck's output width must be divisible by 4 (it narrows to out/4 "
                             f"and out/2); got {out_ch}")
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch // 4, 1, stride, bias=False)
        self.norm2 = nn.BatchNorm2d(out_ch // 4)
        self.drop2 = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm3 = nn.BatchNorm2d(out_ch // 2)
        self.drop3 = nn.Dropout2d(dropout)
        self.conv3 = nn.Conv2d(out_ch // 2, out_ch, 1, bias=False)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.norm1(x))
        branch = self.drop2(F.relu(self.norm2(self.conv1(a))))
        branch = self.drop3(F.relu(self.norm3(self.conv2(branch))))
        return self.shortcut(a) + self.conv3(branch)


class WideResNet38(nn.Module):
    """The dilated WideResNet-38 trunk: ``(B, 3, H, W)`` normalised → ``(B, C, ⌈H/8⌉, ⌈W/8⌉)``.

    Args:
        stem_width: channels of the stem convolution (64).
        widths: ``(mid, out)`` channels of the four basic-block stages.
        depths: blocks per basic stage (``(3, 3, 6, 3)``: 15 blocks, 30 convolutions).
        bottleneck_widths: output channels of the two bottleneck stages (``(2048, 4096)``).
        dropouts: Dropout2d probability inside each bottleneck stage.

    ``out_channels`` is ``bottleneck_widths[-1]``. The defaults are the published network.
    """

    def __init__(
        self,
        stem_width: int = 64,
        widths: Sequence[Sequence[int]] = WR38_WIDTHS,
        depths: Sequence[int] = WR38_DEPTHS,
        bottleneck_widths: Sequence[int] = WR38_BOTTLENECK_WIDTHS,
        dropouts: Sequence[float] = WR38_DROPOUTS,
    ) -> None:
        super().__init__()
        widths = [tuple(int(c) for c in w) for w in widths]
        depths = [int(d) for d in depths]
        if len(widths) != 4 or any(len(w) != 2 for w in widths):
            raise ValueError(f"widths must be four (mid, out) pairs, one per basic stage b2..b5; got {widths}")
        if len(depths) != 4 or any(d < 1 for d in depths):
            raise ValueError(f"depths must be four block counts >= 1 (stages b2..b5); got {depths}")
        if len(bottleneck_widths) != 2 or len(dropouts) != 2:
            raise ValueError(f"bottleneck_widths and dropouts need one value per bottleneck stage (b6, b7); "
                             f"got {tuple(bottleneck_widths)} and {tuple(dropouts)}")
        if any(int(c) < 1 for c in [stem_width, *(c for w in widths for c in w), *bottleneck_widths]):
            raise ValueError("every width must be a positive number of channels")

        self.stem = nn.Conv2d(3, stem_width, 3, padding=1, bias=False)
        strides = (2, 2, 2, 1)
        stages: list[nn.Module] = []
        in_ch = stem_width
        for k, ((mid, out), depth, stride) in enumerate(zip(widths, depths, strides)):
            dilation, first = (2, 1) if k == 3 else (1, 1)
            blocks = [BasicBlock(in_ch, mid, out, stride, dilation, first)]
            blocks += [BasicBlock(out, mid, out, 1, dilation) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out
        for out, p in zip(bottleneck_widths, dropouts):
            stages.append(nn.Sequential(BottleneckBlock(in_ch, int(out), 1, 4, float(p))))
            in_ch = int(out)
        self.stages = nn.ModuleList(stages)
        self.norm_out = nn.BatchNorm2d(in_ch)
        self.out_channels = in_ch

    def first_block(self, k: int) -> BasicBlock | BottleneckBlock:
        """The first block of stage ``k`` (0..3: the basic stages b2..b5; 4, 5: the bottlenecks b6, b7)."""
        # nn.ModuleList / nn.Sequential are not generic: their items are typed nn.Module
        return cast("BasicBlock | BottleneckBlock", cast(nn.Sequential, self.stages[k])[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return F.relu(self.norm_out(x))


def block_names(depths: Sequence[int] = WR38_DEPTHS) -> list[tuple[str, str]]:
    """``(official name, name here)`` of every block: ``("b2", "stages.0.0")``, ``("b2_1", "stages.0.1")``...
    for basic stages of the given depths followed by the two bottlenecks ``b6``, ``b7``."""
    pairs = []
    for k, depth in enumerate(list(depths) + [1, 1]):
        for i in range(depth):
            pairs.append((f"b{k + 2}" + (f"_{i}" if i else ""), f"stages.{k}.{i}"))
    return pairs
