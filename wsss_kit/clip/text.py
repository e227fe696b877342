"""Text side of CLIP: tokenised prompts with known class-name spans, and learnable-context sequences.

A CLIP text sequence is ``[SOS] t_1 ... t_n [EOT] 0 0 ...``; the features of a prompt are the
final-LayerNorm'd transformer output at the ``[EOT]`` position, projected to the joint space.
Prompt learning (CoOp, DeFo, WeakCLIP) replaces or inserts *token embeddings* (width ``W`` of
the text transformer) before the positional embedding is added; this module builds those
sequences. Names used below::

    [SOS] prefix... classname... suffix... [EOT] pad...
          └ template text before "{}"  └ template text after "{}"

A prompt built from the template ``"a photo of {}."`` and the class ``"potted plant"`` has
prefix ``a photo of``, class tokens ``potted plant`` and suffix ``.``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..shapes import check_shape
from .towers import OpenCLIPTower

__all__ = ["POSITIONS", "ContextPosition", "TokenizedPrompts", "assemble_prompt_embeddings",
           "encode_prompt_embeddings", "tokenize_prompts"]

ContextPosition = Literal["before_class", "after_start", "after_class"]
POSITIONS: tuple[str, ...] = ("before_class", "after_start", "after_class")
"""Where learnable context vectors go:

* ``"after_start"``: right after ``[SOS]``, before any template prefix:
  ``[SOS] ctx prefix class suffix [EOT]`` (WeakCLIP's official code);
* ``"before_class"``: immediately before the class-name tokens, after the template prefix:
  ``[SOS] prefix ctx class suffix [EOT]`` (CoOp's "X X X X classname." when the template has no
  prefix, e.g. ``"{}."``; then it is the same sequence as ``"after_start"``);
* ``"after_class"``: immediately after the class-name tokens: ``[SOS] prefix class ctx suffix [EOT]``
  (CoOp's class-token position "front").
"""


@dataclass(frozen=True)
class TokenizedPrompts:
    """Token ids of ``K`` prompts and where each one's class-name tokens are.

    Attributes:
        token_ids: int64 ``(K, L)``, ``[SOS] ... [EOT]`` then zeros.
        class_spans: int64 ``(K, 2)``, ``[start, end)`` column range of the class-name tokens.
        eot_index: int64 ``(K,)``, the column of ``[EOT]``.
    """

    token_ids: Tensor
    class_spans: Tensor
    eot_index: Tensor

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    @classmethod
    def from_token_ids(cls, token_ids: Tensor, eot_token_id: int) -> TokenizedPrompts:
        """Wrap plain token ids ``(K, L)``; the class span is everything between ``[SOS]`` and ``[EOT]``.

        This is the layout of class names tokenised with no template (WeakCLIP's prompts).
        """
        if token_ids.dim() != 2 or token_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token_ids must be an integer tensor (K, L), got {tuple(token_ids.shape)} "
                             f"{token_ids.dtype}")
        is_eot = token_ids == eot_token_id
        if not bool(is_eot.any(dim=1).all()):
            rows = (~is_eot.any(dim=1)).nonzero().flatten().tolist()[:5]
            raise ValueError(f"token ids rows {rows} hold no end-of-text token ({eot_token_id}); "
                             f"tokenise with CLIPModel.tokenize")
        eot = is_eot.int().argmax(dim=1).long()
        spans = torch.stack([torch.ones_like(eot), eot], dim=1)
        return cls(token_ids.long(), spans, eot)


def tokenize_prompts(tokenizer: Any, class_names: Sequence[str], template: str | None = "{}",
                     context_length: int = 77) -> TokenizedPrompts:
    """Tokenise ``template.format(name)`` for every class, recording the class-name token span.

    The ids are ``[SOS] + encode(prefix) + encode(name) + encode(suffix) + [EOT]`` padded with 0
    to ``context_length``; this equals tokenising the whole string whenever the class name is
    separated from the template text by a space or punctuation (``"a photo of {}."``), which is
    how CLIP's BPE splits words. ``template=None`` means ``"{}"`` (the bare class name).

    Raises:
        ValueError: a template without exactly one ``{}``, an empty class name, or a prompt
            longer than ``context_length`` (the message names it and its token count).
    """
    template = "{}" if template is None else template
    if template.count("{}") != 1:
        raise ValueError(f"prompt template {template!r} must contain exactly one '{{}}' for the class name")
    for attr in ("encode", "sot_token_id", "eot_token_id"):
        if not hasattr(tokenizer, attr):
            raise TypeError(f"tokenizer {type(tokenizer).__name__} has no {attr!r}; prompt learning needs "
                            f"a CLIP BPE tokenizer (open_clip.SimpleTokenizer)")
    prefix, suffix = template.split("{}")
    pre = tokenizer.encode(prefix) if prefix.strip() else []
    post = tokenizer.encode(suffix) if suffix.strip() else []
    ids = torch.zeros(len(class_names), context_length, dtype=torch.long)
    spans = torch.zeros(len(class_names), 2, dtype=torch.long)
    eot = torch.zeros(len(class_names), dtype=torch.long)
    for k, name in enumerate(class_names):
        name_ids = tokenizer.encode(name) if name.strip() else []
        if not name_ids:
            raise ValueError(f"class name {k} ({name!r}) is empty")
        row = [tokenizer.sot_token_id, *pre, *name_ids, *post, tokenizer.eot_token_id]
        if len(row) > context_length:
            raise ValueError(f"prompt {template.format(name)!r} has {len(row)} tokens with [SOS]/[EOT], "
                             f"more than the context length {context_length}; raise context_length")
        ids[k, :len(row)] = torch.tensor(row)
        spans[k] = torch.tensor([1 + len(pre), 1 + len(pre) + len(name_ids)])
        eot[k] = len(row) - 1
    return TokenizedPrompts(ids, spans, eot)


def assemble_prompt_embeddings(
    token_embeddings: Tensor,
    prompts: TokenizedPrompts,
    context: Tensor | None = None,
    position: str = "before_class",
    class_embeddings: Sequence[Tensor] | Tensor | None = None,
    max_length: int | None = None,
    pad_embedding: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Token-embedding sequences with context vectors inserted and class tokens optionally replaced.

    Args:
        token_embeddings: ``(K, L, W)``, the embeddings of ``prompts.token_ids``.
        prompts: where each row's class-name tokens and ``[EOT]`` are.
        context: ``(n_ctx, W)`` shared by all prompts, ``(K, n_ctx, W)`` one per prompt, or
            ``None`` (no context vectors).
        position: see :data:`POSITIONS`.
        class_embeddings: replaces the class-name token embeddings of each row: a tensor
            ``(K, n_cls, W)`` or a sequence of ``K`` tensors ``(n_k, W)`` (lengths may differ from
            the names' token counts).
        max_length: the text transformer's number of positions; trailing padding is dropped to
            fit it.
        pad_embedding: ``(W,)`` appended where a row is shorter than the longest one (the
            embedding of token 0, CLIP's padding; zeros if ``None``). With CLIP's causal attention
            padding after ``[EOT]`` does not change the features.

    Returns:
        ``(x, eot)``: embeddings ``(K, T, W)`` and the new ``[EOT]`` columns ``(K,)``. Each row keeps
        its original trailing padding (so WeakCLIP's 5-token names + 8 context vectors give
        ``T = 13``), padded with the embedding of token 0; ``T`` is cut to ``max_length`` where
        only padding is lost. The ``[EOT]`` index moves by the number of inserted vectors.

    Raises:
        ValueError: bad shapes, an unknown position, or a sequence longer than ``max_length``.
    """
    if position not in POSITIONS:
        raise ValueError(f"unknown context position {position!r}; expected one of {', '.join(POSITIONS)}")
    check_shape(token_embeddings, "K L W", "token_embeddings")
    num, _, width = token_embeddings.shape
    if len(prompts) != num:
        raise ValueError(f"{len(prompts)} prompts but token embeddings for {num}")
    contexts = _per_row(context, num, width, "context")
    classes = _per_row(class_embeddings, num, width, "class_embeddings")
    rows: list[Tensor] = []
    eots: list[int] = []
    spans = prompts.class_spans.tolist()
    eot_cols = prompts.eot_index.tolist()
    for k in range(num):
        emb = token_embeddings[k]
        start, end = spans[k]
        eot = eot_cols[k]
        ctx = contexts[k] if contexts is not None else emb[:0]
        cls = classes[k].to(emb.dtype) if classes is not None else emb[start:end]
        ctx = ctx.to(emb.dtype)
        if position == "after_start":
            parts = [emb[:1], ctx, emb[1:start], cls, emb[end:eot + 1]]
        elif position == "before_class":
            parts = [emb[:start], ctx, cls, emb[end:eot + 1]]
        else:
            parts = [emb[:start], cls, ctx, emb[end:eot + 1]]
        row = torch.cat(parts, dim=0)
        eots.append(row.shape[0] - 1)
        rows.append(torch.cat([row, emb[eot + 1:]], dim=0))
    total = max(r.shape[0] for r in rows)
    needed = max(eots) + 1
    if max_length is not None:
        if needed > max_length:
            worst = eots.index(needed - 1)
            raise ValueError(f"prompt {worst} is {needed} tokens long with its context/class vectors, more "
                             f"than the text transformer's {max_length} positions; use fewer context "
                             f"vectors or shorter prompts")
        total = min(total, max_length)
    pad = pad_embedding if pad_embedding is not None else token_embeddings.new_zeros(width)
    out = []
    for row in rows:
        if row.shape[0] >= total:
            out.append(row[:total])
        else:
            filler = pad.to(row.dtype).expand(total - row.shape[0], width)
            out.append(torch.cat([row, filler], dim=0))
    return torch.stack(out), torch.tensor(eots, device=token_embeddings.device)


def encode_prompt_embeddings(tower: OpenCLIPTower, x: Tensor, eot: Tensor) -> Tensor:
    """Run CLIP's text transformer on token embeddings ``(K, T, W)``; return ``(K, E)`` projected features.

    ``tower`` is the module holding ``positional_embedding``, ``transformer``, ``ln_final``,
    ``text_projection`` and ``attn_mask`` (open_clip's ``CLIP`` itself, or ``CustomTextCLIP.text``).
    The position embedding and the causal mask are cut to ``T``; the feature is the
    ``ln_final``'d token at column ``eot[k]`` of each row, times the projection.
    """
    pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
    if pool not in ("argmax", "eos") or getattr(tower, "cls_emb", None) is not None:
        raise TypeError(f"prompt embeddings need a CLIP text tower pooled at [EOT], this one pools with {pool!r}")
    length = x.shape[1]
    if length > tower.positional_embedding.shape[0]:
        raise ValueError(
            f"{length} tokens but the text transformer has {tower.positional_embedding.shape[0]} positions")
    cast = tower.transformer.get_cast_dtype()
    x = x.to(cast) + tower.positional_embedding[:length].to(cast)
    mask = getattr(tower, "attn_mask", None)
    x = tower.transformer(x, attn_mask=mask[:length, :length] if mask is not None else None)
    x = tower.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot.to(x.device)]
    proj = tower.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def _per_row(values: Sequence[Tensor] | Tensor | None, num: int, width: int, what: str) -> list[Tensor] | None:
    if values is None:
        return None
    if isinstance(values, Tensor):
        if values.dim() == 2 and what == "context":
            values = values.unsqueeze(0).expand(num, -1, -1)
        if values.dim() != 3 or values.shape[0] != num or values.shape[2] != width:
            shared = "(n, W) or " if what == "context" else ""
            raise ValueError(f"{what} must be {shared}(K={num}, n, W={width}), got {tuple(values.shape)}")
        return list(values.unbind(0))
    values = list(values)
    if len(values) != num:
        raise ValueError(f"{what}: expected {num} tensors (one per prompt), got {len(values)}")
    for k, v in enumerate(values):
        check_shape(v, "n W", f"{what}[{k}]", sizes={"W": width})
    return values
