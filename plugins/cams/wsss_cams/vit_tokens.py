"""ViT pieces MCTformer needs beyond timm: attention weights per block, and its position-embedding resize.

timm's blocks use fused attention and never return the attention matrix; MCTformer's CAMs are made
of those matrices, so :func:`block_with_attention` runs a timm ``Block`` step by step with the same
parameters and also returns the softmax attention; :func:`block_adding_attention` is its inference
form, which adds the head-summed rows that are read to running sums. :func:`resize_patch_pos_embed` reproduces the
official code's resize of the patch position embeddings (bicubic with a ``+0.1`` scale factor),
which is not the same as resizing to a target size and changes the CAMs measurably.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

__all__ = [
    "block_first_rows",
    "block_with_attention",
    "block_adding_attention",
    "check_block",
    "resize_patch_pos_embed",
    "resize_pos_embed_to",
]


def check_block(block: nn.Module, where: str) -> None:
    """Raise ``ValueError`` unless ``block`` is a pre-norm timm ``Block`` whose attention we can unroll."""
    if type(block) is not Block:
        raise ValueError(
            f"{where}: MCTformer needs timm's standard pre-norm transformer blocks "
            f"(timm.models.vision_transformer.Block); this backbone uses {type(block).__name__}. "
            f"Use a DeiT/ViT such as 'deit_small_patch16_224', 'deit_tiny_patch16_224' or 'test_vit'"
        )


def _qkv(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(norm1(x), q, k, v)``, each of ``q, k, v`` ``(B, heads, N, head_dim)`` after timm's q/k norms."""
    attn: Any = block.attn  # timm annotates Block.attn as nn.Module; its Attention's layers are read
    h = block.norm1(x)
    batch, tokens, _ = h.shape
    qkv = attn.qkv(h).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return h, attn.q_norm(q), attn.k_norm(k), v


def _finish(block: Block, x: torch.Tensor, h: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of the block after attention: ``attended`` ``(B, N, D)`` (heads side by side) → tokens ``(B, N, D)``."""
    attn: Any = block.attn
    out = attn.norm(attended)
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    x = x + block.drop_path1(block.ls1(out))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def block_with_attention(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``block`` on tokens ``x`` ``(B, N, D)``; return ``(tokens (B, N, D), attention (B, heads, N, N))``.

    The attention is the softmax matrix before dropout, the quantity MCTformer reads its class-to-patch
    and patch-to-patch affinities from. The output tokens equal ``block(x)``.
    """
    attn: Any = block.attn
    h, q, k, v = _qkv(block, x)
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    attended = (attn.attn_drop(weights) @ v).transpose(1, 2).reshape(x.shape)
    return _finish(block, x, h, attended), weights


def block_first_rows(block: Block, x: torch.Tensor, rows: int) -> torch.Tensor:
    """``block(x)[:, :rows]`` ``(B, rows, D)`` for tokens ``x`` ``(B, N, D)``, forming only those rows.

    Keys and values come from every token; the queries, the attention, the projection and the MLP
    only from the first ``rows`` (MCTformer V1's class tokens, the only final tokens its logits
    read). Equal to ``block(x)[:, :rows]`` to float tolerance, also under drop path (one draw per
    sample, as in ``block(x)``); differentiable.
    """
    attn: Any = block.attn
    h = block.norm1(x)
    batch, tokens, dim = x.shape
    weight, bias = attn.qkv.weight, attn.qkv.bias
    # the q third of the packed projection for the kept rows only; k and v for every token
    q = F.linear(h[:, :rows], weight[:dim], None if bias is None else bias[:dim])
    kv = F.linear(h, weight[dim:], None if bias is None else bias[dim:])
    q = q.reshape(batch, rows, attn.num_heads, attn.head_dim).transpose(1, 2)
    k, v = kv.reshape(batch, tokens, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    attended = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    return _finish(block, x[:, :rows], h[:, :rows], attended.transpose(1, 2).reshape(batch, rows, dim))


@torch.no_grad()
def block_adding_attention(block: Block, x: torch.Tensor, targets: Sequence[torch.Tensor],
                           output: bool = True) -> torch.Tensor:
    """Run ``block`` on tokens ``x`` ``(B, N, D)`` and add its attention, summed over heads, to ``targets``.

    Every target ``(B, R, N)`` gets, in place, the first ``R`` query rows of the softmax attention
    (before dropout) summed over heads: ``R = N`` for the whole map, ``R = C`` for the class-token
    rows of MCTformer. Only the rows some target needs are formed; when that is every row, the same
    matrix also gives the block's output, else the output goes through fused SDPA. The heads are
    formed one at a time in one reused ``(B, R, N)`` buffer, never all ``(B, heads, N, N)`` at once
    (fresh allocations of that size cost page faults, and one head's map stays in cache for the
    softmax, the sum and ``AV``). Inference only (no autograd through the in-place buffers).

    With ``output=False`` (a last block whose tokens nobody reads) only the attention is formed:
    no ``AV``, projection or MLP, and ``x`` comes back as it was.

    Returns:
        the tokens ``(B, N, D)``, equal to ``block(x)`` to float tolerance (``x`` without ``output``).
    """
    attn: Any = block.attn
    h, q, k, v = _qkv(block, x)
    batch, tokens = x.shape[:2]
    rows = max(int(t.shape[1]) for t in targets)
    for t in targets:
        if t.dim() != 3 or t.shape[0] != batch or t.shape[2] != tokens or t.shape[1] > tokens:
            raise ValueError(f"attention targets must be (B, R, N) = ({batch}, R <= {tokens}, {tokens}); "
                             f"got {tuple(t.shape)}")
    scores = x.new_empty(batch, rows, tokens)
    per_head = []
    for i in range(attn.num_heads):
        # the scale goes on q (R·head_dim values) rather than on the scores (R·N)
        torch.bmm(q[:, i, :rows] * attn.scale, k[:, i].transpose(1, 2), out=scores)
        torch.softmax(scores, dim=-1, out=scores)
        for t in targets:
            t.add_(scores[:, : t.shape[1]])
        if output and rows == tokens:
            per_head.append(attn.attn_drop(scores) @ v[:, i])
    if not output:
        return x
    if rows == tokens:
        attended = torch.cat(per_head, dim=-1)
    else:
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
        attended = attended.transpose(1, 2).reshape(x.shape)
    return _finish(block, x, h, attended)


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
