"""Learnable prompt vectors for CLIP's text encoder: context (CoOp, WeakCLIP) and class (DeFo, target optimisation).

One class, :class:`LearnableContextPrompt`, covers the whole family; the registered strategies
(``coop``, ``defo``, ``target_opt``) and plugin presets (WeakCLIP's ``weakclip_context``) are
that class with other keyword defaults, made by :func:`context_prompt_preset`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..clip.text import POSITIONS, TokenizedPrompts
from ..interfaces import PromptStrategy
from .template import apply_overrides, check_class_names, require_clip

if TYPE_CHECKING:
    from ..clip import CLIPModel

__all__ = ["CONTEXT_INITS", "LearnableContextPrompt"]

CONTEXT_INITS = ("phrase", "normal")


class LearnableContextPrompt(PromptStrategy):
    """Prompts whose context vectors and/or class vectors are learnt; CLIP itself stays frozen.

    The text sequence is the tokenised ``template`` (``{}`` = class name) with ``n_ctx`` learnable
    vectors inserted at ``position`` (see :data:`wsss_kit.clip.POSITIONS`)::

        before_class:  [SOS] prefix  V_1..V_n  classname  suffix [EOT]    (CoOp, template "{}.")
        after_start:   [SOS] V_1..V_n  prefix  classname  suffix [EOT]    (WeakCLIP, no template)
        after_class:   [SOS] prefix  classname  V_1..V_n  suffix [EOT]

    With ``learn_class`` the class-name tokens are replaced by learnable class vectors
    (DeFo; target optimisation when ``learn_context=False`` and the template is the fixed context).

    Args:
        n_ctx: number of context vectors. With ``init="phrase"``, ``None`` means the phrase's token
            count, and any other value must equal it. Must be ``None``/0 when ``learn_context=False``.
        position: where the context vectors go.
        template: fixed text around the class name (one ``{}``); ``None`` = the bare class name.
        init: ``"phrase"`` (context vectors start as the token embeddings of ``init_phrase``) or
            ``"normal"`` (truncated normal, std ``init_std``, cut at ``±init_bound`` absolute, the
            timm/mmcv convention).
        init_phrase: e.g. ``"a photo of a"`` (4 tokens).
        init_std, init_bound: of the truncated normal (context and ``class_init="normal"``).
        class_specific: one context per class ``(K, n_ctx, W)`` instead of one shared ``(n_ctx, W)``.
        learn_context: learn context vectors at all.
        learn_class: learn class vectors replacing the class-name tokens.
        class_init: ``"name"`` (start as the name's token embeddings; each class gets as many vectors
            as its name has tokens) or ``"normal"`` (``n_class_tokens`` vectors per class, default 1).
        n_class_tokens: vectors per class for ``class_init="normal"``.
        class_name_overrides: words used instead of some class names (``{"person": "player"}``).
        context_length: tokenisation length of the template+name before the vectors are inserted
            (default: the model's 77; WeakCLIP tokenises bare names to 5).
        width: text token width ``W``; taken from the CLIP model when the vectors are built, and
            checked against it if given.
        normalize: L2-normalise the returned features.
        clip, class_names: build the parameters now (so an optimiser can be created right away);
            otherwise they are built at the first ``forward`` — create the optimiser after that,
            or call :meth:`build` first.

    ``forward(class_names, clip=clip)`` → text features ``(K, E)`` (projected, float32). Only this
    module's ``context`` ``(n_ctx, W)`` / ``(K, n_ctx, W)`` and ``class_vectors`` (``K`` tensors
    ``(n_k, W)``) are parameters; the CLIP model is passed in, never owned. Class-specific context
    and class vectors tie the strategy to the class names it was built with.
    """

    wsss_api_version = "1.0"
    learnable = True

    def __init__(self, *, n_ctx: int | None = None, position: str = "before_class", template: str | None = "{}.",
                 init: str = "phrase", init_phrase: str | None = "a photo of a", init_std: float = 0.02,
                 init_bound: float = 2.0, class_specific: bool = False, learn_context: bool = True,
                 learn_class: bool = False, class_init: str = "name", n_class_tokens: int | None = None,
                 class_name_overrides: Mapping[str, str] | None = None, context_length: int | None = None,
                 width: int | None = None, normalize: bool = False, clip: CLIPModel | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        who = type(self).__name__
        if position not in POSITIONS:
            raise ValueError(f"{who}: position must be one of {', '.join(POSITIONS)}, got {position!r}")
        if init not in CONTEXT_INITS:
            raise ValueError(f"{who}: init must be one of {', '.join(CONTEXT_INITS)}, got {init!r}")
        if class_init not in ("name", "normal"):
            raise ValueError(f"{who}: class_init must be 'name' or 'normal', got {class_init!r}")
        if template is not None and template.count("{}") != 1:
            raise ValueError(f"{who}: template {template!r} must contain exactly one '{{}}' for the class name")
        if not learn_context and not learn_class:
            raise ValueError(f"{who}: nothing to learn (learn_context=False, learn_class=False); use the "
                             f"'template' strategy for fixed prompts")
        if learn_context:
            if init == "phrase" and not init_phrase:
                raise ValueError(f"{who}: init='phrase' needs init_phrase (e.g. 'a photo of a'), or use init='normal'")
            if init == "normal" and (n_ctx is None or n_ctx < 1):
                raise ValueError(f"{who}: init='normal' needs n_ctx >= 1, got {n_ctx!r}")
        elif n_ctx:
            raise ValueError(f"{who}: n_ctx={n_ctx} but learn_context=False; the template is the fixed context")
        if class_init == "name" and n_class_tokens is not None and learn_class:
            raise ValueError(f"{who}: class_init='name' gives each class as many vectors as its name has tokens; "
                             f"n_class_tokens applies to class_init='normal'")
        if n_class_tokens is not None and n_class_tokens < 1:
            raise ValueError(f"{who}: n_class_tokens must be >= 1, got {n_class_tokens}")
        self.n_ctx, self.position, self.template = n_ctx, position, template
        self.init, self.init_phrase = init, init_phrase
        self.init_std, self.init_bound = float(init_std), float(init_bound)
        self.class_specific, self.learn_context, self.learn_class = class_specific, learn_context, learn_class
        self.class_init, self.n_class_tokens = class_init, n_class_tokens
        self.class_name_overrides = dict(class_name_overrides or {})
        self.context_length, self.width, self.normalize = context_length, width, bool(normalize)
        self.register_parameter("context", None)
        self.class_vectors = nn.ParameterList()
        self.class_names: tuple[str, ...] | None = None
        """The class names the parameters were built for (``None`` before :meth:`build`)."""
        self._tokens: dict[tuple[Any, ...], TokenizedPrompts] = {}
        if class_names is not None and (clip is not None or not self._needs_clip()):
            self.build(clip, class_names)

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        """Whether the learnable vectors exist."""
        return self.class_names is not None

    def _needs_clip(self) -> bool:
        phrase = self.learn_context and self.init == "phrase"
        return phrase or (self.learn_class and self.class_init == "name") or self.width is None

    def build(self, clip: CLIPModel | None, class_names: Sequence[str]) -> LearnableContextPrompt:
        """Create the learnable vectors for ``class_names`` (on the CLIP model's device); returns ``self``."""
        who = type(self).__name__
        if clip is not None:
            clip = require_clip(clip, who)
            if self.width is not None and self.width != clip.text_width:
                raise ValueError(f"{who}: width={self.width} but the CLIP text width is {clip.text_width}")
            self.width = clip.text_width
        elif self._needs_clip():
            require_clip(clip, who)
        assert self.width is not None  # set from the CLIP model above, or _needs_clip() made require_clip raise
        width = int(self.width)
        names = apply_overrides(class_names, self.class_name_overrides)
        device = clip.text_tower.token_embedding.weight.device if clip is not None else None
        num = len(names)
        if num == 0:
            raise ValueError(f"{who}: no class names given")
        if self.learn_context:
            if self.init == "phrase":
                assert clip is not None  # init='phrase' needs the model: _needs_clip() checked it above
                ids = clip.tokenizer.encode(self.init_phrase)
                if self.n_ctx is not None and self.n_ctx != len(ids):
                    raise ValueError(
                        f"{who}: n_ctx={self.n_ctx} but init phrase {self.init_phrase!r} has {len(ids)} tokens; "
                        f"pass n_ctx={len(ids)} (or None), another init_phrase, or init='normal' for random vectors")
                ctx = clip.token_embeddings(torch.tensor(ids, device=device)).detach().clone()
                if self.class_specific:
                    ctx = ctx.unsqueeze(0).repeat(num, 1, 1)
            else:
                assert self.n_ctx is not None  # init='normal' requires n_ctx >= 1 (checked in __init__)
                shape = (num, self.n_ctx, width) if self.class_specific else (self.n_ctx, width)
                ctx = self._normal(shape, device)
            self.context = nn.Parameter(ctx.float())
        if self.learn_class:
            if self.class_init == "name":
                assert clip is not None  # class_init='name' needs the model: _needs_clip() checked it above
                vecs = [clip.token_embeddings(torch.tensor(clip.tokenizer.encode(n), device=device)).detach().clone()
                        for n in names]
                empty = [n for n, v in zip(names, vecs) if v.shape[0] == 0]
                if empty:
                    raise ValueError(f"{who}: class names {empty} have no tokens")
            else:
                vecs = [self._normal((self.n_class_tokens or 1, width), device) for _ in names]
            self.class_vectors = nn.ParameterList([nn.Parameter(v.float()) for v in vecs])
        self.class_names = tuple(str(n) for n in class_names)
        self._tokens.clear()
        return self

    def _normal(self, shape: tuple[int, ...], device: torch.device | None) -> Tensor:
        out = torch.empty(shape, device=device)
        return nn.init.trunc_normal_(out, std=self.init_std, a=-self.init_bound, b=self.init_bound)

    # ------------------------------------------------------------------ forward
    def forward(self, class_names: Sequence[str], clip: CLIPModel | None = None, **context: Any) -> Tensor:
        """Text features ``(K, E)`` float32 of ``class_names`` through ``clip`` with this module's vectors."""
        who = type(self).__name__
        check_class_names(class_names, who)
        clip = require_clip(clip, who)
        if not self.built:
            self.build(clip, class_names)
        assert self.class_names is not None  # build() sets it
        names = tuple(str(n) for n in class_names)
        if (self.class_specific or self.learn_class) and names != self.class_names:
            raise ValueError(f"{who} holds per-class vectors for {len(self.class_names)} classes "
                             f"{list(self.class_names)[:6]}..., called with {len(names)} {list(names)[:6]}...; "
                             f"build a new strategy for other classes")
        if self.width != clip.text_width:
            raise ValueError(f"{who} was built for text width {self.width}, this CLIP model has {clip.text_width}")
        key = (names, clip.context_length)
        if key not in self._tokens:
            words = apply_overrides(names, self.class_name_overrides)
            self._tokens[key] = clip.tokenize_prompts(words, self.template, self.context_length)
        device = clip.text_tower.token_embedding.weight.device
        ctx = self.context.to(device) if self.context is not None else None
        cls = [v.to(device) for v in self.class_vectors] if self.learn_class else None
        feats = clip.encode_text_with_context(self._tokens[key], ctx, self.position, cls)
        return F.normalize(feats, dim=-1) if self.normalize else feats

    # ------------------------------------------------------------------ checkpoints
    def get_extra_state(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names) if self.class_names is not None else None,
                "width": self.width}

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, Mapping):
            names = state.get("class_names")
            if names is not None:
                self.class_names = tuple(names)
            self.width = state.get("width") or self.width
            self._tokens.clear()

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # An unbuilt strategy takes its vectors' shapes from the checkpoint.
        key = prefix + "context"
        if self.context is None and self.learn_context and key in state_dict:
            self.context = nn.Parameter(torch.empty_like(state_dict[key], dtype=torch.float32))
        if self.learn_class and len(self.class_vectors) == 0:
            vecs: list[nn.Parameter] = []
            while f"{prefix}class_vectors.{len(vecs)}" in state_dict:
                vecs.append(nn.Parameter(torch.empty_like(state_dict[f"{prefix}class_vectors.{len(vecs)}"],
                                                          dtype=torch.float32)))
            if vecs:
                self.class_vectors = nn.ParameterList(vecs)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        parts = [f"position={self.position!r}", f"template={self.template!r}"]
        if self.learn_context:
            shape = tuple(self.context.shape) if self.context is not None else "unbuilt"
            parts.append(f"context={shape} init={self.init!r}")
        if self.learn_class:
            parts.append(f"class_vectors={len(self.class_vectors)} init={self.class_init!r}")
        return ", ".join(parts)
