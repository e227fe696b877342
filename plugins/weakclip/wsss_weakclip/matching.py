"""Co-attention matching (paper Sec. 3.3.3, Eqs. 4, 7-9; the official "context decoder").

Text embeddings ``t`` ``(B, K, E)`` and the visual context ``v = [CLS; pixels]`` ``(B, 1 + hw, E)``
(both CLIP-projected, ``E`` = 512 for ViT-B) update each other::

    t* = t + gamma · Δt,   Δt = out_t(decoder_t(in_t(t), in_v(v)))      text queries the pixels
    v* = v + beta  · Δv,   Δv = out_v(decoder_v(in_v(v), in_t(t)))      pixels query the text

* ``in_v`` = LayerNorm → Linear(E, d) → LayerNorm, ``in_t`` = LayerNorm → Linear(E, d), ``out_*`` =
  LayerNorm → Linear(d, E); ``d`` = 256 (the width), 4 heads, 3 layers, dropout 0.1.
* A decoder layer is pre-LayerNorm: self-attention, cross-attention to the (already projected,
  not re-normalised) memory, then an MLP (ratio 4, GELU, dropout inside and after); q/k/v
  projections have no bias, the output projection has one and is followed by dropout.
* ``gamma`` and ``beta`` are learnable ``E``-vectors initialised to 0.1 (the paper's "learnable
  temperatures" α, β; Table 8 ablates the initial value).
* Official quirk (``chained=False``): the layers are not chained — every layer gets the original
  projected inputs and only the last one's output is used, so the other layers get no gradient
  and never change (here they are not run, and their parameters do not require gradients; they
  stay in the state dict so official checkpoints load). ``chained=True`` is an
  ordinary decoder stack. In both, each stream's memory is the other stream's projected input.

Then :func:`match_scores`: cosine similarity of every pixel with every class text, no
temperature (Eq. 4/9) → the score map ``(B, K, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss_kit.shapes import check_shape

__all__ = ["CoAttentionLayer", "CoAttentionMatching", "MultiHeadAttention", "match_scores"]


def match_scores(pixels: Tensor, text: Tensor) -> Tensor:
    """Text-to-pixel matching (Eq. 4): cosine similarity, no temperature.

    Args:
        pixels: ``(B, E, h, w)`` pixel embeddings.
        text: ``(B, K, E)`` or ``(K, E)`` class text embeddings.

    Returns:
        ``(B, K, h, w)`` in ``[-1, 1]``.
    """
    check_shape(pixels, "B E h w", "pixels")
    check_shape(text, "B K E | K E", "text", sizes={"B": pixels.shape[0], "E": pixels.shape[1]})
    if text.dim() == 2:
        text = text.unsqueeze(0).expand(pixels.shape[0], -1, -1)
    return torch.einsum("bchw,bkc->bkhw", F.normalize(pixels, dim=1), F.normalize(text, dim=2))


class MultiHeadAttention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections and a biased output projection + dropout.

    ``forward(query (B, N, d), memory (B, M, d)) -> (B, N, d)``; keys and values both come from ``memory``.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        b, n, d = query.shape
        m = memory.shape[1]
        h = self.heads
        q = self.q(query).view(b, n, h, d // h).transpose(1, 2)
        k = self.k(memory).view(b, m, h, d // h).transpose(1, 2)
        v = self.v(memory).view(b, m, h, d // h).transpose(1, 2)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.drop(self.out(x.transpose(1, 2).reshape(b, n, d)))


class _MLP(nn.Module):
    def __init__(self, width: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width * ratio)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(width * ratio, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class CoAttentionLayer(nn.Module):
    """One pre-LayerNorm decoder layer: self-attention, cross-attention to ``memory``, MLP (ratio 4, GELU)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.1, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.self_attn = MultiHeadAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.cross_attn = MultiHeadAttention(width, heads, dropout)
        self.norm3 = nn.LayerNorm(width)
        self.mlp = _MLP(width, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y)
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.drop(self.mlp(self.norm3(x)))


class CoAttentionMatching(nn.Module):
    """Text ↔ pixel co-attention with learnable residual scales (see the module docstring).

    Args:
        embed_dim: ``E``, the CLIP joint-embedding size of text and visual tokens.
        width: ``d``, the decoder width (official 256).
        heads, layers, dropout: of each decoder (official 4, 3, 0.1).
        chained: chain the layers (``False`` = the official quirk: only the last layer counts).
        visual_update: also update the visual tokens with the second decoder (official ``if_decouple``
            and the paper's Eq. 8); otherwise ``v* = v`` and the visual decoder does not exist.
        residual_init: initial value of every entry of ``gamma`` (and ``beta``); paper Table 8.

    ``forward(text (B, K, E), visual (B, 1 + hw, E)) -> (text*, visual*)`` with the same shapes.
    Parameter names: ``text_in``, ``visual_in``, ``text_layers.i``, ``text_out``, ``visual_layers.i``,
    ``visual_out``, ``gamma``, ``beta``.
    """

    def __init__(self, embed_dim: int, width: int = 256, heads: int = 4, layers: int = 3, dropout: float = 0.1, *,
                 chained: bool = False, visual_update: bool = True, residual_init: float = 0.1) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"CoAttentionMatching needs at least one layer, got layers={layers}")
        e, d = int(embed_dim), int(width)
        self.embed_dim, self.width, self.chained, self.visual_update = e, d, bool(chained), bool(visual_update)
        self.residual_init = float(residual_init)
        self.visual_in = nn.Sequential(nn.LayerNorm(e), nn.Linear(e, d), nn.LayerNorm(d))
        self.text_in = nn.Sequential(nn.LayerNorm(e), nn.Linear(e, d))
        self.text_layers = nn.ModuleList([CoAttentionLayer(d, heads, dropout) for _ in range(layers)])
        self.text_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, e))
        self.gamma = nn.Parameter(torch.full((e,), self.residual_init))
        if self.visual_update:
            self.visual_layers = nn.ModuleList([CoAttentionLayer(d, heads, dropout) for _ in range(layers)])
            self.visual_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, e))
            self.beta = nn.Parameter(torch.full((e,), self.residual_init))
        self.reset_parameters()
        if not self.chained:  # their outputs are discarded: no gradient can reach them (DDP-friendly)
            for stream in (self.text_layers, getattr(self, "visual_layers", ())):
                for layer in list(stream)[:-1]:
                    layer.requires_grad_(False)

    def reset_parameters(self) -> None:
        """The official initialisation: Linear weights truncated normal (std 0.02, cut at ±2), biases 0,
        LayerNorms 1/0, residual scales ``residual_init``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.gamma.fill_(self.residual_init)
            if self.visual_update:
                self.beta.fill_(self.residual_init)

    def _decode(self, layers: nn.ModuleList, x: Tensor, memory: Tensor) -> Tensor:
        if self.chained:
            for layer in layers:
                x = layer(x, memory)
            return x
        return layers[-1](x, memory)  # earlier layers' outputs are discarded (official quirk)

    def forward(self, text: Tensor, visual: Tensor) -> tuple[Tensor, Tensor]:
        if text.dim() != 3 or visual.dim() != 3 or text.shape[0] != visual.shape[0]:
            raise ValueError(f"CoAttentionMatching expects text (B, K, E) and visual (B, 1 + hw, E); got "
                             f"{tuple(text.shape)} and {tuple(visual.shape)}")
        if text.shape[2] != self.embed_dim or visual.shape[2] != self.embed_dim:
            raise ValueError(f"CoAttentionMatching was built for E = {self.embed_dim}; got text {tuple(text.shape)}, "
                             f"visual {tuple(visual.shape)}")
        t_in, v_in = self.text_in(text), self.visual_in(visual)
        text = text + self.gamma * self.text_out(self._decode(self.text_layers, t_in, v_in))
        if self.visual_update:
            visual = visual + self.beta * self.visual_out(self._decode(self.visual_layers, v_in, t_in))
        return text, visual

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, width={self.width}, layers={len(self.text_layers)}, "
                f"chained={self.chained}, visual_update={self.visual_update}, residual_init={self.residual_init}")
