"""Image side of CLIP: any-size ViT forward and multi-layer dense patch tokens.

These functions work on open_clip's ``VisionTransformer`` (attributes ``conv1``,
``class_embedding``, ``positional_embedding`` ``(1 + g_h·g_w, width)``, ``patch_dropout``,
``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj`` ``(width, E)``; the blocks take
batch-first ``(B, N, width)`` tokens through ``transformer.forward``'s own layout handling).
Inputs here are already normalised; :class:`wsss_kit.clip.CLIPModel` does that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .towers import OpenCLIPTower

__all__ = ["DenseFeatures", "embed_patches", "interpolate_pos_embed", "pool_and_project", "run_blocks",
           "vision_tower_checks"]

INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass
class DenseFeatures:
    """Multi-layer dense CLIP features of a batch.

    Attributes:
        layers: block index → patch tokens of the residual stream after that block (before
            ``ln_post``, CLS dropped) as maps ``(B, width, h, w)``.
        pixel_embeddings: the last block's patch tokens after ``ln_post`` and the visual
            projection, ``(B, E, h, w)``; ``None`` unless asked for.
        cls_embedding: the pooled token (CLS for CLIP ViTs) after ``ln_post`` and the projection,
            ``(B, E)`` (equal to :meth:`CLIPModel.encode_image`); ``None`` unless asked for.
        grid: ``(h, w)`` = ``(H // patch, W // patch)``.
    """

    layers: dict[int, Tensor]
    pixel_embeddings: Tensor | None
    cls_embedding: Tensor | None
    grid: tuple[int, int]

    @property
    def visual_context(self) -> Tensor:
        """``[CLS; patch tokens]`` projected, ``(B, 1 + h·w, E)`` (WeakCLIP's visual context)."""
        if self.pixel_embeddings is None or self.cls_embedding is None:
            raise ValueError("visual_context needs dense_features(..., embeddings=True)")
        pixels = self.pixel_embeddings.flatten(2).transpose(1, 2)
        return torch.cat([self.cls_embedding.unsqueeze(1), pixels], dim=1)


def vision_tower_checks(visual: OpenCLIPTower) -> None:
    """Raise ``TypeError`` unless ``visual`` is an open_clip ViT this module can drive."""
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise TypeError(f"dense CLIP features need an open_clip VisionTransformer image tower, this model "
                        f"has a {type(visual).__name__} (e.g. a ResNet or timm tower)")
    if getattr(visual, "attn_pool", None) is not None:
        raise TypeError("vision towers with attentional pooling (CoCa) are not supported")
    if visual.proj is None:
        raise TypeError("the vision tower has no projection (pruned head)")


def interpolate_pos_embed(pos: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                          mode: str = "bicubic") -> Tensor:
    """Resize a ViT position embedding ``(1 + g_h·g_w, C)`` to ``(1 + h·w, C)``.

    The class-token row is kept; the patch rows are resized as a ``C``-channel image with
    ``F.interpolate(mode, align_corners=False)``. At ``dst_grid == src_grid`` the stored tensor
    is returned unchanged.
    """
    if mode not in INTERPOLATIONS:
        raise ValueError(f"position-embedding interpolation must be one of {INTERPOLATIONS}, got {mode!r}")
    if tuple(dst_grid) == tuple(src_grid):
        return pos
    gh, gw = src_grid
    if pos.shape[0] != 1 + gh * gw:
        raise ValueError(f"position embedding has {pos.shape[0]} rows, expected 1 + {gh}×{gw}")
    cls, grid = pos[:1], pos[1:]
    grid = grid.reshape(1, gh, gw, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(dst_grid), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(dst_grid[0] * dst_grid[1], -1).to(pos.dtype)
    return torch.cat([cls, grid], dim=0)


def embed_patches(visual: OpenCLIPTower, images: Tensor, mode: str = "bicubic") -> tuple[Tensor, tuple[int, int]]:
    """Patch-embed normalised images ``(B, 3, H, W)`` into tokens ``(B, 1 + h·w, width)`` after ``ln_pre``.

    ``(h, w) = (H // patch, W // patch)`` (a remainder of fewer than ``patch`` pixels is
    ignored by the strided convolution); the position embedding is resized to ``(h, w)``.
    """
    x = visual.conv1(images)
    h, w = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = interpolate_pos_embed(visual.positional_embedding, tuple(visual.grid_size), (h, w), mode)
    x = x + pos.to(x.dtype)
    x = visual.patch_dropout(x)
    return visual.ln_pre(x), (int(h), int(w))


def run_blocks(visual: OpenCLIPTower, tokens: Tensor, keep: Sequence[int] = (), stop: int | None = None
               ) -> tuple[Tensor, dict[int, Tensor]]:
    """Run the transformer blocks ``0..stop`` (all by default) on tokens ``(B, N, width)``.

    Returns the last computed tokens and ``{i: tokens after block i}`` for ``i`` in ``keep``.
    """
    blocks = visual.transformer.resblocks
    stop = len(blocks) - 1 if stop is None else stop
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = tokens if batch_first else tokens.transpose(0, 1)
    kept: dict[int, Tensor] = {}
    for i, block in enumerate(blocks):
        if i > stop:
            break
        x = block(x)
        if i in keep:
            kept[i] = x if batch_first else x.transpose(0, 1)
    return (x if batch_first else x.transpose(0, 1)), kept


def pool_and_project(visual: OpenCLIPTower, tokens: Tensor, with_pixels: bool = False
                     ) -> tuple[Tensor, Tensor | None]:
    """Final tokens ``(B, 1 + N, width)`` → pooled embedding ``(B, E)`` and optionally the projected
    patch tokens ``(B, N, E)`` (``ln_post`` then ``@ proj``), following the tower's pooling
    (``"tok"`` = CLS, ``"avg"`` = mean of patch tokens; ``final_ln_after_pool`` respected)."""
    pool_type = getattr(visual, "pool_type", "tok")
    normed = visual.ln_post(tokens)
    if pool_type == "avg":
        pooled = visual.ln_post(tokens[:, 1:].mean(dim=1)) if visual.final_ln_after_pool \
            else normed[:, 1:].mean(dim=1)
    elif pool_type == "tok":
        pooled = normed[:, 0]
    else:
        raise TypeError(f"vision pool_type {pool_type!r} is not supported (expected 'tok' or 'avg')")
    pixels = normed[:, 1:] @ visual.proj if with_pixels else None
    return pooled @ visual.proj, pixels
