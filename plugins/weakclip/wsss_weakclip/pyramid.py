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

from torch import Tensor, nn

from wsss_kit.shapes import check_shape

__all__ = ["PyramidAdapter", "pyramid_sizes"]


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
            nn.Sequential(nn.GroupNorm(1, c), nn.ConvTranspose2d(c, c, 2, stride=2), nn.BatchNorm2d(c), nn.GELU(),
                          nn.ConvTranspose2d(c, c, 2, stride=2)),
            nn.Sequential(nn.GroupNorm(1, c), nn.ConvTranspose2d(c, c, 2, stride=2)),
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

    def extra_repr(self) -> str:
        return f"width={self.width}, trainable={self.trainable}"
