"""Fused attention for open_clip's ViT and text blocks.

open_clip's default ``ResidualAttentionBlock`` calls ``nn.MultiheadAttention`` batch-first. In
eval/no-grad mode that takes PyTorch's native MHA fast path, which on CPU computes ``QKᵀ``, the
softmax and ``AV`` as separate kernels; with gradients on, ``F.multi_head_attention_forward``
projects a transposed (non-contiguous) copy of the input. :func:`mha_forward` computes the same
attention from the module's own parameters with one ``in_proj`` on the batch-first input and
``F.scaled_dot_product_attention`` (a fused kernel on CPU and CUDA).

:func:`fuse_attention` switches every such block of a model to it by giving the block the
subclass :class:`FusedResidualAttentionBlock`, which overrides ``attention`` only: parameters,
state-dict keys, ``ls_1``/``ls_2`` (and hooks on them), ``isinstance`` checks and open_clip's own
``forward`` stay as they are, and open_clip's files are not touched. ``wsss_kit.clip.CLIPModel``
does this when it wraps a model, so ``encode_image``, ``encode_text``, ``dense_features`` and the
prompt-learning text path all run fused.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# FusedResidualAttentionBlock is built on first access (module __getattr__), so it is not listed here
__all__ = ["fuse_attention", "mha_forward", "sdpa_supported"]


def sdpa_supported(attn: object) -> bool:
    """Whether :func:`mha_forward` can stand in for ``attn`` (packed same-size projections, no
    ``bias_k``/``bias_v``, no ``add_zero_attn``)."""
    return (isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim
            and attn.in_proj_weight is not None and attn.bias_k is None and attn.bias_v is None
            and not attn.add_zero_attn)


def _sdpa_mask(attn_mask: Tensor | None, batch: int, heads: int, q_len: int, k_len: int,
               dtype: torch.dtype) -> Tensor | None:
    """``nn.MultiheadAttention``'s ``attn_mask`` ``(L, S)`` or ``(B·heads, L, S)`` as an SDPA mask.

    MHA's boolean masks mark positions *not* to attend (``True`` = masked); SDPA's boolean masks
    mark positions that *may* be attended, so a boolean mask becomes an additive float mask
    (``-inf`` where masked). Float masks are additive in both.
    """
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill_(
            attn_mask, float("-inf"))
    else:
        attn_mask = attn_mask.to(dtype)
    if attn_mask.dim() == 2:
        if tuple(attn_mask.shape) != (q_len, k_len):
            raise ValueError(f"attn_mask must be ({q_len}, {k_len}) for {q_len} queries and {k_len} keys, "
                             f"got {tuple(attn_mask.shape)}")
        return attn_mask
    if tuple(attn_mask.shape) != (batch * heads, q_len, k_len):
        raise ValueError(f"attn_mask must be ({q_len}, {k_len}) or (B·heads={batch * heads}, {q_len}, {k_len}), "
                         f"got {tuple(attn_mask.shape)}")
    return attn_mask.view(batch, heads, q_len, k_len)


def mha_forward(attn: nn.MultiheadAttention, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                attn_mask: Tensor | None = None) -> Tensor:
    """``attn(query, key, value, need_weights=False, attn_mask=attn_mask)[0]`` through fused SDPA.

    Args:
        attn: an ``nn.MultiheadAttention`` for which :func:`sdpa_supported` holds.
        query: ``(B, L, D)`` if ``attn.batch_first`` else ``(L, B, D)``.
        key, value: ``(B, S, D)`` (or ``(S, B, D)``); ``None`` = ``query`` (self-attention, one
            packed input projection).
        attn_mask: ``(L, S)`` or ``(B·heads, L, S)``, boolean (``True`` = not attended) or additive float.

    Returns:
        ``(B, L, D)`` (or ``(L, B, D)``), equal to the module's output to float tolerance; attention
        dropout (``attn.dropout``) applies in training mode as in the module.
    """
    key = query if key is None else key
    value = key if value is None else value
    if not attn.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    batch, q_len, dim = query.shape
    k_len = key.shape[1]
    heads = attn.num_heads
    head_dim = dim // heads
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    if key is query and value is query:
        qkv = F.linear(query, weight, bias).view(batch, q_len, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
    else:
        w_q, w_k, w_v = weight.chunk(3)
        b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
        q = F.linear(query, w_q, b_q).view(batch, q_len, heads, head_dim).transpose(1, 2)
        k = F.linear(key, w_k, b_k).view(batch, k_len, heads, head_dim).transpose(1, 2)
        v = F.linear(value, w_v, b_v).view(batch, k_len, heads, head_dim).transpose(1, 2)
    mask = _sdpa_mask(attn_mask, batch, heads, q_len, k_len, q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                         dropout_p=attn.dropout if attn.training else 0.0)
    out = F.linear(out.transpose(1, 2).reshape(batch, q_len, dim), attn.out_proj.weight, attn.out_proj.bias)
    return out if attn.batch_first else out.transpose(0, 1)


def _residual_block_class() -> type[nn.Module]:
    from open_clip.transformer import ResidualAttentionBlock

    return ResidualAttentionBlock


_FUSED: dict[type, type] = {}


def _fused_class() -> type[nn.Module]:
    """:class:`FusedResidualAttentionBlock`, defined on first use (importing this module does not
    import open_clip)."""
    base = _residual_block_class()
    if base not in _FUSED:
        _FUSED[base] = type("FusedResidualAttentionBlock", (base,), {
            "attention": _fused_attention,
            "_sdpa_attention": _sdpa_attention,
            "__module__": __name__,
            "__qualname__": "FusedResidualAttentionBlock",
            "__doc__": "open_clip's ``ResidualAttentionBlock`` with its attention computed by :func:`mha_forward`.",
        })
    return _FUSED[base]


def _fused_attention(self: Any, q_x: Tensor, k_x: Tensor | None = None, v_x: Tensor | None = None,
                     attn_mask: Tensor | None = None) -> Tensor:
    # same arguments and result as ResidualAttentionBlock.attention (open_clip casts the mask to the input dtype)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q_x.dtype)
    if torch.jit.is_scripting():  # TorchScript (e.g. saving an OpenAI-style archive): open_clip's own path
        k = k_x if k_x is not None else q_x
        v = v_x if v_x is not None else q_x
        return self.attn(q_x, k, v, need_weights=False, attn_mask=attn_mask)[0]
    return self._sdpa_attention(q_x, k_x, v_x, attn_mask)


@torch.jit.unused
def _sdpa_attention(self: Any, q_x: Tensor, k_x: Tensor | None, v_x: Tensor | None,
                    attn_mask: Tensor | None) -> Tensor:
    return mha_forward(self.attn, q_x, k_x, v_x, attn_mask=attn_mask)


# TorchScript compiles methods by their function's name: the override must be called "attention"
_fused_attention.__name__ = _fused_attention.__qualname__ = "attention"


def __getattr__(name: str) -> Any:
    if name == "FusedResidualAttentionBlock":  # the class needs open_clip; build it when first asked for
        return _fused_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fuse_attention(model: nn.Module) -> int:
    """Switch every open_clip ``ResidualAttentionBlock`` inside ``model`` to fused SDPA attention, in place.

    Blocks whose ``nn.MultiheadAttention`` :func:`mha_forward` cannot replace (see
    :func:`sdpa_supported`), subclasses of the block, and open_clip's ``CustomResidualAttentionBlock``
    (already SDPA) are left alone. Calling it again is a no-op. Returns the number of blocks switched.
    """
    base = _residual_block_class()
    fused = _fused_class()
    count = 0
    for module in model.modules():
        if type(module) is base and sdpa_supported(getattr(module, "attn", None)):
            module.__class__ = fused
            count += 1
    return count
