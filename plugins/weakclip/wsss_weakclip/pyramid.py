"""WeakCLIP's pyramid adapter (paper Sec. 3.3.2, Fig. 3): four ViT stage maps → a 4-level feature pyramid.

Each level is built from one stage's patch-token map ``(B, C, h, w)`` (``h, w`` = the patch
grid, 1/16 of the image for ViT-B/16) independently of the others:

=======  =============================================================  ===========  ==========
level    layers                                                         output       ViT-B/16
=======  =============================================================  ===========  ==========
0        GroupNorm(1) → ConvT 2×2 s2 → BatchNorm → GELU → ConvT 2×2 s2    ``4h × 4w``   1/4
1        GroupNorm(1) → ConvT 2×2 s2                                     ``2h × 2w``   1/8
2        GroupNorm(1)                                                    ``h × w``     1/16
3        GroupNorm(1) → MaxPool 2×2                                      ``⌊h/2⌋ × ⌊w/2⌋``  1/32
=======  =============================================================  ===========  ==========

The channel count stays ``C`` (768 for ViT-B). The layers keep PyTorch's default initialisation,
as in the official code. There the adapter is trained with learning-rate multiplier 0 (it sits
in the ``backbone`` the config freezes), so it stays at its random initialisation and only the
BatchNorm running statistics move; the paper says it is trained. :class:`PyramidAdapter` does
both: ``trainable=False`` switches its parameters' gradients off (BatchNorm statistics still
update in train mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from wsss_kit.shapes import check_shape

__all__ = ["PatchConvTranspose2d", "PyramidAdapter", "conv_transpose_2x2", "pyramid_sizes"]


def conv_transpose_2x2(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride=2)`` for a 2×2 kernel, as one matrix product.

    With kernel = stride = 2 the output windows do not overlap: output pixel ``(2i + a, 2j + b)``
    of channel ``o`` is ``Σ_c x[c, i, j] · weight[c, o, a, b] + bias[o]``. So the whole layer is
    ``(O·4, C) @ (C, h·w)`` (bias folded into the product) followed by one interleaving copy. On a
    CPU that takes 145 ms where ``ConvTranspose2d`` takes 240 ms (768 → 768 channels, 64² → 128²,
    one thread); values are equal to float rounding.

    Args:
        x: ``(B, C, h, w)``.
        weight: ``(C, O, 2, 2)`` (``ConvTranspose2d``'s layout, ``groups=1``).
        bias: ``(O,)`` or ``None``.

    Returns:
        ``(B, O, 2h, 2w)``, contiguous.
    """
    check_shape(x, "B C h w", "conv_transpose_2x2: x")
    check_shape(weight, "C O 2 2", "conv_transpose_2x2: weight", sizes={"C": x.shape[1]})
    b, c, h, w = x.shape
    o = weight.shape[1]
    rows = weight.reshape(c, o * 4).t()  # (O·4, C), row (o, a, b)
    flat = x.reshape(b, c, h * w)
    if bias is None:
        y = torch.matmul(rows, flat)
    else:
        check_shape(bias, "O", "conv_transpose_2x2: bias", sizes={"O": o})
        y = torch.baddbmm(bias.repeat_interleave(4)[None, :, None], rows.expand(b, -1, -1), flat)
    return y.view(b, o, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, o, 2 * h, 2 * w)


class PatchConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(in, out, 2, stride=2)`` computed by :func:`conv_transpose_2x2`: the same
    parameters (names, shapes, initialisation), the same outputs to float rounding, faster on a CPU."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 2, stride=2, bias=bias)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            raise ValueError("PatchConvTranspose2d: output_size is not supported (the output is always 2h x 2w)")
        return conv_transpose_2x2(x, self.weight, self.bias)


def pyramid_sizes(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """The four level sizes for a patch grid ``(h, w)``: ``(4h, 4w), (2h, 2w), (h, w), (h//2, w//2)``."""
    h, w = grid
    return [(4 * h, 4 * w), (2 * h, 2 * w), (h, w), (h // 2, w // 2)]


class PyramidAdapter(nn.Module):
    """Per-level adapters from four ViT stage maps to strides ×4, ×2, ×1 and ×½ of the patch grid.

    Args:
        width: ``C``, the ViT width (channels of every stage map and of every level).
        trainable: whether the adapter's parameters get gradients (paper: yes; official code:
            no, lr multiplier 0 — see the module docstring).

    ``forward(stages)``: a sequence of 4 maps ``(B, C, h, w)`` → a list of 4 maps ``(B, C, h_i, w_i)``
    with the sizes of :func:`pyramid_sizes`. ``levels[i]`` is an ``nn.Sequential`` whose indices
    follow the official ``fpn{i+1}`` modules (``levels.0.2`` is the BatchNorm).
    """

    def __init__(self, width: int, *, trainable: bool = True) -> None:
        super().__init__()
        if int(width) < 1:
            raise ValueError(f"PyramidAdapter: width must be >= 1, got {width!r}")
        c = int(width)
        self.width = c
        self.levels = nn.ModuleList([
            nn.Sequential(nn.GroupNorm(1, c), PatchConvTranspose2d(c, c), nn.BatchNorm2d(c), nn.GELU(),
                          PatchConvTranspose2d(c, c)),
            nn.Sequential(nn.GroupNorm(1, c), PatchConvTranspose2d(c, c)),
            nn.Sequential(nn.GroupNorm(1, c)),
            nn.Sequential(nn.GroupNorm(1, c), nn.MaxPool2d(kernel_size=2, stride=2)),
        ])
        self.trainable = bool(trainable)
        self.requires_grad_(self.trainable)

    def forward(self, stages: Sequence[Tensor]) -> list[Tensor]:
        if len(stages) != 4:
            raise ValueError(f"PyramidAdapter needs 4 stage maps, got {len(stages)}")
        for i, s in enumerate(stages):
            check_shape(s, f"B {self.width} h w", f"PyramidAdapter: stage {i}")
        return [level(s) for level, s in zip(self.levels, stages)]

    def split_last(self, stages: Sequence[Tensor]) -> tuple[list[Tensor], list[PatchConvTranspose2d | None]]:
        """The levels one layer short: ``(maps, last)`` where, for a level whose last layer is a
        :class:`PatchConvTranspose2d` (levels 0 and 1), ``maps[i]`` is its input and ``last[i]`` the
        layer (``last[i](maps[i]) == forward(stages)[i]``); the other levels are complete, with
        ``None``. A linear consumer (the decoder's 1×1 lateral conv) can then fold that layer into
        its own weights (:meth:`~wsss_weakclip.decoder.FPNNeck.forward`)."""
        if len(stages) != 4:
            raise ValueError(f"PyramidAdapter needs 4 stage maps, got {len(stages)}")
        maps: list[Tensor] = []
        last: list[PatchConvTranspose2d | None] = []
        for i, (level, s) in enumerate(zip(self.levels, stages)):
            check_shape(s, f"B {self.width} h w", f"PyramidAdapter: stage {i}")
            layers = list(cast(nn.Sequential, level))
            tail = layers[-1] if isinstance(layers[-1], PatchConvTranspose2d) else None
            for layer in layers[:-1] if tail is not None else layers:
                s = layer(s)
            maps.append(s)
            last.append(tail)
        return maps, last

    def extra_repr(self) -> str:
        return f"width={self.width}, trainable={self.trainable}"
