"""WeakCLIP settings as data: the official code, the paper text, and the paper's ablation rows.

A preset is a plain dict of :class:`wsss_weakclip.WeakCLIPNet` keywords;
``WeakCLIPNet(names, preset="paper", n_context=16)`` means "the paper preset, then this override".

``official`` (the default) follows the released code (github hustvl/WeakCLIP,
``configs/voc_weakclip_vit-b_512x512_20k_mct.py``), which produced the published numbers.
``paper`` differs from it in exactly these keywords (:data:`PAPER_VS_OFFICIAL`):

=======================  ==========  =====  ==========================================================
keyword                  official    paper  why
=======================  ==========  =====  ==========================================================
``adapter_trainable``    False       True   the config gives the backbone (which holds the adapter)
                                            lr multiplier 0; the paper trains the adapter
``chained``              False       True   the official co-attention layers each get the original
                                            inputs and only the last one counts; the paper
                                            describes an ordinary (chained) decoder
``cls_embedding_twice``  True        False  the official ViT forward adds the class embedding to the
                                            CLS token twice; the paper uses CLIP's encoder as is
``clip_drop_path``       0.1         0.0    the official frozen ViT keeps stochastic depth in train
                                            mode; the paper's CLIP is fixed
=======================  ==========  =====  ==========================================================

Things that are the same in both although the text reads differently: the learnable context sits
right after ``[SOS]`` (Eq. 5 puts it "in front of the class text embeddings"; with bare class
names, no template, that is the same sequence); the visual tokens are updated too (Eq. 8,
official ``if_decouple=True``).

Ablation rows (all on top of ``official``; mIoU on VOC val after retraining, :data:`PAPER_MIOU`):

* Table 4 — ``table4_direct_clip`` (fixed CLIP, plain text-to-pixel matching, no training, 12.3),
  ``table4_coattn`` (+ co-attention matching, fixed template, 67.4), ``table4_coattn_prompt``
  (+ learnable prompt, 68.9), ``table4_coattn_prompt_adapter`` (+ pyramid adapter with an FPN
  decoder that sees the score map at the 1/16 level only, 70.3), ``table4_full`` (+ text-guided
  decoder = ``official``, 72.6). The paper does not say what predicts without a decoder, nor how
  the adapter is decoded without the text-guided decoder; these rows are this plugin's reading
  (see :data:`TABLE4`). The "Unfixed" row (58.1, CLIP fine-tuned with an unnamed head) is not
  offered: CLIP stays frozen here.
* Table 5 — ``table5_n2``, ``table5_n4``, ``table5_n8``, ``table5_n16``: ``n_context``.
* Table 8 — ``table8_init1``, ``table8_init1e-1``, ``table8_init1e-2``, ``table8_init1e-3``:
  ``residual_init`` (the initial value of the residual scales gamma and beta).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["OFFICIAL", "PAPER_MIOU", "PAPER_VS_OFFICIAL", "PRESETS", "TABLE4", "TABLE5", "TABLE8", "preset_names",
           "resolve_settings"]

OFFICIAL: Mapping[str, Any] = MappingProxyType({
    # frozen CLIP image encoder
    "clip_precision": "fp32",            # the official code runs CLIP in fp32; "fp16"/"bf16" autocast is faster
    "clip_normalization": "imagenet",
    "pos_interpolation": "bilinear",
    "stage_layers": None,                # None: (3, 5, 7, 11) for 12 blocks, scaled for other depths
    "cls_embedding_twice": True,
    "pos_base_size": 512,                # official input_resolution: the 14×14 table goes to 32×32 first
    "clip_drop_path": 0.1,
    # text
    "learnable_prompt": True,
    "n_context": 8,
    "context_position": "after_start",
    "context_init_std": 1.0,
    "fixed_template": "a photo of a {}.",  # used only when learnable_prompt=False (not in the official code)
    # co-attention matching
    "co_attention": True,
    "visual_update": True,
    "chained": False,
    "residual_init": 0.1,
    "matching_width": 256,
    "matching_heads": 4,
    "matching_layers": 3,
    "matching_dropout": 0.1,
    # pyramid adapter
    "pyramid_adapter": True,
    "adapter_trainable": False,
    # decoder
    "decoder": "fpn",                    # "fpn" or "none" (logits = score_map / score_temperature, upsampled)
    "score_concat": "all",               # "all" = text-guided; "one" = level score_concat_index; "none"
    "score_concat_index": 2,
    "decoder_channels": 256,
    "decoder_dropout": 0.1,
    "score_temperature": 0.07,           # tau of the official auxiliary score-map loss; logits of decoder="none"
})
"""Every :class:`~wsss_weakclip.WeakCLIPNet` keyword with the official code's value."""

PAPER_VS_OFFICIAL: Mapping[str, Any] = MappingProxyType({
    "adapter_trainable": True,
    "chained": True,
    "cls_embedding_twice": False,
    "clip_drop_path": 0.0,
})
"""The keywords in which the paper text differs from the official code (the ``paper`` preset's overrides)."""

TABLE4: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "table4_direct_clip": MappingProxyType({"learnable_prompt": False, "co_attention": False,
                                            "pyramid_adapter": False, "decoder": "none"}),
    "table4_coattn": MappingProxyType({"learnable_prompt": False, "pyramid_adapter": False, "decoder": "none"}),
    "table4_coattn_prompt": MappingProxyType({"pyramid_adapter": False, "decoder": "none"}),
    "table4_coattn_prompt_adapter": MappingProxyType({"score_concat": "one"}),
    "table4_full": MappingProxyType({}),
})
"""Paper Table 4 (WeakCLIP components), as overrides of ``official``."""

TABLE5: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {f"table5_n{n}": MappingProxyType({"n_context": n}) for n in (2, 4, 8, 16)})
"""Paper Table 5 (number of learnable context vectors)."""

TABLE8: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {f"table8_init{tag}": MappingProxyType({"residual_init": value})
     for tag, value in (("1", 1.0), ("1e-1", 0.1), ("1e-2", 0.01), ("1e-3", 0.001))})
"""Paper Table 8 (initial value of the co-attention residual scales, the paper's "temperatures")."""

PAPER_MIOU: Mapping[str, float] = MappingProxyType({
    "table4_direct_clip": 12.3, "table4_coattn": 67.4, "table4_coattn_prompt": 68.9,
    "table4_coattn_prompt_adapter": 70.3, "table4_full": 72.6,
    "table5_n2": 72.2, "table5_n4": 72.3, "table5_n8": 72.6, "table5_n16": 72.3,
    "table8_init1": 72.5, "table8_init1e-1": 72.6, "table8_init1e-2": 72.3, "table8_init1e-3": 72.2,
})
"""The paper's mIoU (%) on PASCAL VOC 2012 val for each ablation preset."""


def _build() -> dict[str, Mapping[str, Any]]:
    presets: dict[str, Mapping[str, Any]] = {"official": OFFICIAL,
                                             "paper": MappingProxyType({**OFFICIAL, **PAPER_VS_OFFICIAL})}
    for table in (TABLE4, TABLE5, TABLE8):
        for name, overrides in table.items():
            presets[name] = MappingProxyType({**OFFICIAL, **overrides})
    return presets


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(_build())
"""Every preset's complete keyword set (read-only)."""


def preset_names() -> list[str]:
    """The preset names, ``official`` and ``paper`` first."""
    return list(PRESETS)


def resolve_settings(preset: str | Mapping[str, Any] = "official", **overrides: Any) -> dict[str, Any]:
    """The complete keyword set of ``preset`` (a name or a dict of overrides of ``official``), then ``overrides``.

    Raises:
        ValueError: unknown preset name (the message lists them and the closest match).
        TypeError: a keyword that no preset knows (the message lists the valid ones).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            close = difflib.get_close_matches(preset, PRESETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown WeakCLIP preset {preset!r}{hint}; available: {', '.join(PRESETS)}")
        base: dict[str, Any] = dict(PRESETS[preset])
        source = f"preset {preset!r}"
    elif isinstance(preset, Mapping):
        base = dict(OFFICIAL)
        _check_keys(preset, "the preset dict")
        base.update(preset)
        source = "the preset dict"
    else:
        raise TypeError(f"preset must be a preset name or a dict of settings, got {type(preset).__name__}")
    _check_keys(overrides, f"the overrides of {source}")
    base.update(overrides)
    return copy.deepcopy(base)


def _check_keys(settings: Mapping[str, Any], where: str) -> None:
    unknown = [k for k in settings if k not in OFFICIAL]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, OFFICIAL, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"unknown WeakCLIP setting(s) in {where}: {', '.join(hints)}; valid: {', '.join(OFFICIAL)}")
