"""ViT pieces MCTformer needs beyond timm: attention weights per block, and its position-embedding resize.

timm's blocks use fused attention and never return the attention matrix; MCTformer's CAMs are made
of those matrices, so :func:`block_with_attention` runs a timm ``Block`` step by step with the same
parameters and also returns the softmax attention. :func:`resize_patch_pos_embed` reproduces the
official code's resize of the patch position embeddings (bicubic with a ``+0.1`` scale factor),
which is not the same as resizing to a target size and changes the CAMs measurably.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

__all__ = ["block_with_attention", "check_block", "resize_patch_pos_embed", "resize_pos_embed_to"]


def check_block(block: nn.Module, where: str) -> None:
    """Raise ``ValueError`` unless ``block`` is a pre-norm timm ``Block`` whose attention we can unroll."""
    if type(block) is not Block:
        raise ValueError(
            f"{where}: MCTformer needs timm's standard pre-norm transformer blocks "
            f"(timm.models.vision_transformer.Block); this backbone uses {type(block).__name__}. "
            f"Use a DeiT/ViT such as 'deit_small_patch16_224', 'deit_tiny_patch16_224' or 'test_vit'"
        )


def block_with_attention(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``block`` on tokens ``x`` ``(B, N, D)``; return ``(tokens (B, N, D), attention (B, heads, N, N))``.

    The attention is the softmax matrix before dropout, the quantity MCTformer reads its class-to-patch
    and patch-to-patch affinities from. The output tokens equal ``block(x)``.
    """
    # timm annotates Block.attn as nn.Module; what is read below are its Attention's layers and sizes
    attn: Any = block.attn
    h = block.norm1(x)
    batch, tokens, _ = h.shape
    qkv = attn.qkv(h).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    out = (attn.attn_drop(weights) @ v).transpose(1, 2).reshape(batch, tokens, -1)
    out = attn.norm(out)
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    x = x + block.drop_path1(block.ls1(out))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, weights


def resize_patch_pos_embed(pos: torch.Tensor, base_grid: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """Patch position embeddings ``(1, h0·w0, D)`` on ``base_grid = (h0, w0)`` → ``(1, h·w, D)`` on ``grid``.

    Bicubic with ``scale_factor = (h + 0.1) / h0`` (and likewise for the width), as the official
    MCTformer/DINO code does; PyTorch then maps output pixels back with that factor, not with
    ``h / h0``, so the result differs slightly from a resize to ``(h, w)``.
    """
    (h0, w0), (h, w) = base_grid, grid
    dim = pos.shape[-1]
    grid_pos = pos.reshape(1, h0, w0, dim).permute(0, 3, 1, 2)
    out = F.interpolate(grid_pos, scale_factor=((h + 0.1) / h0, (w + 0.1) / w0), mode="bicubic",
                        align_corners=False)
    if tuple(out.shape[-2:]) != (h, w):  # floor((h + 0.1) / h0 * h0) is h for any sane grid
        raise RuntimeError(f"position-embedding resize gave {tuple(out.shape[-2:])}, expected {(h, w)}")
    return out.permute(0, 2, 3, 1).reshape(1, h * w, dim)


def resize_pos_embed_to(pos: torch.Tensor, num_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a checkpoint's position embeddings ``(1, prefix + n, D)`` (square ``n``) to ``grid``.

    Used when loading ImageNet weights trained at another resolution: bicubic to the target size,
    ``align_corners=False``, prefix tokens unchanged (the official fine-tuning script does the same).
    """
    prefix, patches = pos[:, :num_prefix], pos[:, num_prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"position embeddings with {patches.shape[1]} patch tokens are not a square grid")
    if (side, side) == tuple(grid):
        return pos
    grid_pos = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos, size=tuple(grid), mode="bicubic", align_corners=False)
    return torch.cat([prefix, grid_pos.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)
