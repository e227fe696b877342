"""``WeakCLIPNet``: the WeakCLIP network (Zhu et al., IJCV 2024; paper Sec. 3.3, Fig. 2).

::

    images (B,3,H,W) in [0,1]
      └─ frozen CLIP ViT ─┬─ stage maps after blocks 3,5,7,11 (B,C,h,w) ─ pyramid adapter ─┐
                          └─ visual context [CLS; pixels] (B,1+hw,E)                       │
    class names ─ learnable prompt ─ CLIP text encoder ─ text (K,E), once per forward      │
                                         co-attention matching (text ↔ visual)             │
                                         cosine matching → score_map (B,K,h,w)  ───────────┤
                                         text-guided decoder (score map at every level, FPN)
                                         → logits (B,K,4h,4w)

``h, w = H // patch, W // patch`` (1/16 for ViT-B/16), so the logits are at 1/4 of the image when
``H`` and ``W`` are multiples of the patch size. ``K`` counts every class name given, background
included. Every component is switchable (:mod:`wsss_weakclip.presets`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss_kit.clip import DEFAULT_CLIP_WEIGHTS, CLIPModel, frozen_clip
from wsss_kit.input_space import check_input_space
from wsss_kit.prompts import TemplatePrompt

from .decoder import SCORE_CONCAT, TextGuidedDecoder
from .encoder import FrozenCLIPEncoder
from .matching import CoAttentionMatching, match_scores
from .presets import resolve_settings
from .prompt import WeakCLIPContext
from .pyramid import PyramidAdapter, pyramid_sizes

__all__ = ["DEFAULT_CLIP_WEIGHTS", "WeakCLIPNet"]


PARAM_GROUPS = ("prompt", "adapter", "matching", "decoder")
"""The trainable parts, in the order :meth:`WeakCLIPNet.param_groups` lists them."""


class WeakCLIPNet(nn.Module):
    """The WeakCLIP network: frozen CLIP + learnable prompt + pyramid adapter + co-attention + decoder.

    Args:
        class_names: the ``K`` class names, background included (``"background"`` for VOC), as
            the dataset spells them: the official code feeds the raw names to the text encoder.
        clip_model: an open_clip ViT architecture (``"ViT-B-16"`` official; ``"wsss-tiny-clip"``
            for tests) or a frozen :class:`wsss_kit.clip.CLIPModel` (then ``clip_weights``,
            ``clip_precision``, ``clip_normalization`` and ``pos_interpolation`` are not used: the
            model is taken as it is).
        clip_weights: ``"default"`` (OpenAI's for ViT-B-16/ViT-B-32, ``released:clip_vit_b16_openai``;
            none for the tiny model), a local file or anything :func:`wsss_kit.clip.load_clip`
            accepts; ``None`` = random.
        preset: a name from :data:`wsss_weakclip.presets.PRESETS` (``"official"``, ``"paper"``,
            ``"table4_coattn"``, ``"table5_n16"``, ...) or a dict of settings; ``**overrides`` then apply.
        input_space: ``"unit"`` (images in [0, 1], the default) or ``"normalized"`` (images already
            ``(x - mean) / std`` with CLIP's normalisation, ImageNet's officially, as the official
            data loaders give them): the images go to the ViT as they are.

    Settings (keywords; defaults = ``official``, see :data:`wsss_weakclip.presets.OFFICIAL`):
        clip_precision: CLIP compute precision, ``"fp32"`` / ``"fp16"`` / ``"bf16"`` / ``"auto"``;
            autocast covers the frozen CLIP forward (image and text) only.
        clip_normalization, pos_interpolation: ``"imagenet"``, ``"bilinear"`` (official).
        stage_layers: the four ViT blocks of the pyramid (``None``: 3, 5, 7, 11 scaled to the depth).
        cls_embedding_twice, pos_base_size, clip_drop_path: official image-forward details
            (:mod:`wsss_weakclip.encoder`).
        learnable_prompt: WeakCLIP's learnable context (:class:`~wsss_weakclip.WeakCLIPContext`) or
            the fixed ``fixed_template`` (text features cached, encoded once).
        n_context, context_position, context_init_std: of the learnable context.
        co_attention: the co-attention matching module; ``visual_update``, ``chained``,
            ``residual_init``, ``matching_width``, ``matching_heads``, ``matching_layers``,
            ``matching_dropout`` configure it (:class:`~wsss_weakclip.matching.CoAttentionMatching`).
        pyramid_adapter, adapter_trainable: the adapter and whether it is trained.
        decoder: ``"fpn"`` (the decoder, needs the adapter) or ``"none"`` (logits = the score map
            divided by ``score_temperature``, resized bilinearly to ``4h × 4w``).
        score_concat, score_concat_index, decoder_channels, decoder_dropout: of the decoder
            (:class:`~wsss_weakclip.decoder.TextGuidedDecoder`).

    ``forward(images)``: ``(B, 3, H, W)`` RGB in [0, 1] → ``{"logits": (B, K, 4h, 4w),
    "score_map": (B, K, h, w)}``; the score map is the cosine text-to-pixel matching after
    co-attention (no temperature). The text is encoded once per forward and shared by the batch;
    without gradients (inference) the learnable prompt's text is cached until the context changes.

    The CLIP weights are not part of the state dict (they come from ``clip_weights``); checkpoints
    hold ``prompt.*``, ``matching.*``, ``adapter.*`` and ``decoder.*``. Official checkpoints load
    with :func:`wsss_weakclip.convert.load_official_checkpoint`.
    """

    def __init__(self, class_names: Sequence[str], clip_model: str | CLIPModel = "ViT-B-16",
                 clip_weights: str | os.PathLike[str] | None = "default", preset: str | dict[str, Any] = "official",
                 input_space: str = "unit", **overrides: Any) -> None:
        super().__init__()
        if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(class_names) < 1:
            raise ValueError(f"class_names must be a list of class names (background included), got {class_names!r}")
        s = resolve_settings(preset, **overrides)
        self._check_settings(s)
        self.settings = s
        self.preset = preset if isinstance(preset, str) else "custom"
        self.class_names = tuple(str(n) for n in class_names)
        self.input_space = check_input_space(input_space)
        clip = self._build_clip(clip_model, clip_weights, s)
        self.encoder = FrozenCLIPEncoder(clip, s["stage_layers"], cls_embedding_twice=s["cls_embedding_twice"],
                                         pos_base_size=s["pos_base_size"], drop_path=s["clip_drop_path"],
                                         input_space=self.input_space)
        _keep_out_of_state_dict(self, "encoder.clip")
        e, c, k = clip.embed_dim, clip.vision_width, len(self.class_names)
        if s["learnable_prompt"]:
            self.prompt: nn.Module = WeakCLIPContext(n_ctx=s["n_context"], position=s["context_position"],
                                                     init_std=s["context_init_std"], clip=clip,
                                                     class_names=self.class_names)
        else:
            self.prompt = TemplatePrompt(s["fixed_template"])
        self.matching = CoAttentionMatching(
            e, s["matching_width"], s["matching_heads"], s["matching_layers"], s["matching_dropout"],
            chained=s["chained"], visual_update=s["visual_update"], residual_init=s["residual_init"],
        ) if s["co_attention"] else None
        self.adapter = PyramidAdapter(c, trainable=s["adapter_trainable"]) if s["pyramid_adapter"] else None
        self.decoder = TextGuidedDecoder(c, k, s["decoder_channels"], s["decoder_dropout"],
                                         score_concat=s["score_concat"],
                                         score_concat_index=s["score_concat_index"]) if s["decoder"] == "fpn" else None
        self._text_cache: tuple[tuple[Any, ...], Tensor] | None = None

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _check_settings(s: dict[str, Any]) -> None:
        if s["decoder"] not in ("fpn", "none"):
            raise ValueError(f"decoder must be 'fpn' or 'none', got {s['decoder']!r}")
        if s["decoder"] == "fpn" and not s["pyramid_adapter"]:
            raise ValueError("decoder='fpn' decodes the pyramid adapter's levels: set pyramid_adapter=True, "
                             "or decoder='none' (logits from the score map)")
        if s["score_concat"] not in SCORE_CONCAT:
            raise ValueError(f"score_concat must be one of {', '.join(SCORE_CONCAT)}, got {s['score_concat']!r}")
        if s["learnable_prompt"] and int(s["n_context"]) < 1:
            raise ValueError(f"n_context must be >= 1 with the learnable prompt, got {s['n_context']!r} "
                             f"(learnable_prompt=False for a fixed template)")
        if float(s["score_temperature"]) <= 0:
            raise ValueError(f"score_temperature must be > 0, got {s['score_temperature']!r}")

    @staticmethod
    def _build_clip(clip_model: str | CLIPModel, clip_weights: Any, s: dict[str, Any]) -> CLIPModel:
        return frozen_clip(clip_model, clip_weights, owner="WeakCLIP", precision=s["clip_precision"],
                           normalization=s["clip_normalization"], pos_interpolation=s["pos_interpolation"])

    # ------------------------------------------------------------------ properties
    @property
    def clip(self) -> CLIPModel:
        """The frozen CLIP model."""
        return self.encoder.clip

    @property
    def num_classes(self) -> int:
        """``K``, background included."""
        return len(self.class_names)

    @property
    def embed_dim(self) -> int:
        """``E``, the CLIP joint-embedding size."""
        return self.encoder.embed_dim

    @property
    def width(self) -> int:
        """``C``, the ViT width (pyramid channels)."""
        return self.encoder.width

    # ------------------------------------------------------------------ text
    def _prompt_parameters(self) -> list[Tensor]:
        return [p for p in self.prompt.parameters()]

    def text_embeddings(self) -> Tensor:
        """The class text features ``(K, E)`` (projected, not normalised) from the prompt.

        With gradients off, the learnable prompt's features are cached until its parameters
        change (in place, e.g. an optimiser step or ``load_state_dict``) or move; a fixed
        template is cached by the CLIP model itself.
        """
        params = self._prompt_parameters()
        if not params:
            return self.prompt(self.class_names, clip=self.clip)
        if torch.is_grad_enabled():
            self._text_cache = None
            return self.prompt(self.class_names, clip=self.clip)
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, self.prompt(self.class_names, clip=self.clip).detach())
        return self._text_cache[1]

    def clear_text_cache(self) -> None:
        """Forget the cached text features."""
        self._text_cache = None
        self.clip.clear_text_cache()

    # ------------------------------------------------------------------ forward
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``images`` ``(B, 3, H, W)`` (in [0, 1], or normalised with ``input_space="normalized"``) →
        ``{"logits": (B, K, 4h, 4w), "score_map": (B, K, h, w)}``."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            space = "in [0, 1]" if self.input_space == "unit" else "normalised"
            raise ValueError(f"WeakCLIPNet expects float images (B, 3, H, W) {space}, got shape "
                             f"{tuple(images.shape)} and dtype {images.dtype}")
        feats = self.encoder(images)
        b, (h, w) = images.shape[0], feats.grid
        text = self.text_embeddings()
        if tuple(text.shape) != (self.num_classes, self.embed_dim):
            raise ValueError(f"the prompt returned text features {tuple(text.shape)}, expected "
                             f"({self.num_classes}, {self.embed_dim})")
        text = text.unsqueeze(0).expand(b, -1, -1)
        if self.matching is not None:
            text, visual = self.matching(text, feats.visual_context)
            pixels = visual[:, 1:].transpose(1, 2).reshape(b, -1, h, w)
        else:
            pixels = feats.pixel_embeddings
        scores = match_scores(pixels, text)
        if self.decoder is not None:
            assert self.adapter is not None  # decoder='fpn' requires pyramid_adapter (checked in __init__)
            # levels 0 and 1 one layer short: the decoder folds their last (linear) layer into its own
            maps, last = self.adapter.split_last(self.encoder.stages(feats))
            logits = self.decoder(maps, scores, last)
        else:
            logits = F.interpolate(scores / float(self.settings["score_temperature"]), size=pyramid_sizes((h, w))[0],
                                   mode="bilinear", align_corners=False)
        return {"logits": logits, "score_map": scores}

    # ------------------------------------------------------------------ training
    def param_groups(self, lr: float, **group_options: Any) -> list[dict[str, Any]]:
        """Optimiser parameter groups ``[{"name", "params", "lr", **group_options}, ...]`` of the trainable parts.

        Groups, when they hold trainable parameters: ``prompt`` (the context vectors), ``adapter``
        (only with ``adapter_trainable``), ``matching`` (co-attention incl. gamma/beta), ``decoder``.
        CLIP is never in a group: none of its parameters requires gradients.
        """
        groups = []
        for name in PARAM_GROUPS:
            module = getattr(self, name)
            params = [p for p in module.parameters() if p.requires_grad] if module is not None else []
            if params:
                groups.append({"name": name, "params": params, "lr": float(lr), **group_options})
        return groups

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter that requires gradients (exactly those of :meth:`param_groups`)."""
        return [p for g in self.param_groups(0.0) for p in g["params"]]

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, clip={self.clip.name!r}, preset={self.preset!r}, "
                f"learnable_prompt={self.settings['learnable_prompt']}, co_attention={self.settings['co_attention']}, "
                f"pyramid_adapter={self.settings['pyramid_adapter']}, decoder={self.settings['decoder']!r}")


def _keep_out_of_state_dict(parent: nn.Module, path: str) -> None:
    """Leave the submodule at ``path`` out of ``parent``'s state dict; accept state dicts without it.

    Loading a state dict that lacks the submodule's keys keeps its current weights; one that has
    them loads them. The frozen CLIP comes from its own weights whenever the model is built.
    """
    prefix_of = f"{path}."

    def drop(_module: nn.Module, state_dict: dict[str, Tensor], prefix: str, _metadata: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + prefix_of)]:
            del state_dict[key]

    def fill(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_args: Any) -> None:
        sub = module.get_submodule(path)
        for key, value in sub.state_dict().items():
            state_dict.setdefault(f"{prefix}{prefix_of}{key}", value)

    parent.register_state_dict_post_hook(drop)
    parent.register_load_state_dict_pre_hook(fill)
