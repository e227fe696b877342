"""The frozen CLIP inside an official WeakCLIP checkpoint, built into a :class:`wsss_kit.clip.CLIPModel`.

An official checkpoint (github hustvl/WeakCLIP) stores the whole segmentor, CLIP included: the image
tower under ``backbone.*`` (next to the pyramid adapter ``backbone.fpn*``) and the text tower under
``text_encoder.*``. Those are OpenAI's CLIP weights unchanged (the official config trains both with
learning rate 0) except the two position embeddings, which the official code stores already cut to
what it uses:

* the image table resized once, at load time, from 14 × 14 to ``input_resolution // patch`` per
  side (512 // 16 = 32; every forward resizes that table to the input's grid);
* the text table cut to the prompt length, ``5 + N`` rows (5 tokens of class name, N context vectors).

:func:`clip_from_official` builds the named open_clip architecture at exactly those sizes (image
size ``grid · patch``, text context length ``5 + N``; QuickGELU, as the official CLIP blocks use)
and loads every CLIP tensor of the file into it, strictly. With the official preset's
``pos_base_size=512`` the encoder then resizes the stored 32 × 32 table to each input's grid, as the
official forward does, so no ``ViT-B-16.pt`` is needed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from wsss_kit.clip import CLIPModel, load_clip, register_clip_config
from wsss_kit.errors import WeightsError

from .convert import is_official_layout, official_clip_tensors

__all__ = ["carries_clip", "clip_from_official"]

_NEEDED = ("backbone.conv1.weight", "backbone.positional_embedding", "text_encoder.token_embedding.weight",
           "text_encoder.positional_embedding")


def carries_clip(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` is an official WeakCLIP state dict that holds its CLIP (image and text towers)."""
    return is_official_layout(state) and all(isinstance(state.get(k), Tensor) for k in _NEEDED)


def _architecture(name: Any, state: Mapping[str, Tensor], source: str) -> str:
    """``name``'s open_clip config at the checkpoint's sizes, registered; returns the registered name."""
    import open_clip

    from wsss_kit.clip import clip_architecture

    registered = clip_architecture(name)  # a name, or a custom architecture (JSON file, mapping) registered
    base = open_clip.get_model_config(registered)
    if base is None:
        raise ValueError(f"unknown open_clip architecture {name!r} for the CLIP inside {source}")
    cfg = copy.deepcopy(base)
    patch = int(state["backbone.conv1.weight"].shape[-1])
    rows = int(state["backbone.positional_embedding"].shape[0]) - 1
    grid = round(rows ** 0.5)
    if grid * grid != rows:
        raise WeightsError(f"{source}: backbone.positional_embedding has {rows + 1} rows, not 1 + a square grid")
    cfg["vision_cfg"]["image_size"] = grid * patch
    cfg["text_cfg"]["context_length"] = int(state["text_encoder.positional_embedding"].shape[0])
    cfg["quick_gelu"] = True  # the official CLIP blocks (OpenAI's) use QuickGELU
    tag = f"{grid * patch}px-{cfg['text_cfg']['context_length']}tok"
    return register_clip_config(f"{registered}-weakclip-{tag}", cfg, source=f"the CLIP inside {source}", replace=True)


def clip_from_official(state: Mapping[str, Tensor], clip_model: Any = "ViT-B-16", *, source: str = "checkpoint",
                       **load_kwargs: Any) -> CLIPModel:
    """A frozen :class:`~wsss_kit.clip.CLIPModel` holding the CLIP tensors of an official WeakCLIP state dict.

    Args:
        state: the official state dict (``backbone.*``, ``text_encoder.*``, ...).
        clip_model: the open_clip architecture the checkpoint was trained with (``"ViT-B-16"`` for the
            released ones; a JSON file or mapping as :func:`wsss_kit.clip.clip_architecture` takes); it
            is built at the checkpoint's position-embedding sizes.
        source: how errors name the checkpoint (e.g. ``"checkpoint /path/weakclip_voc.pth"``).
        **load_kwargs: ``precision``, ``normalization``, ``pos_interpolation``, ... of
            :func:`wsss_kit.clip.load_clip`.

    Raises:
        WeightsError: the file holds no CLIP, or CLIP tensors that do not fit ``clip_model`` (naming
            the file, the architecture and the keys).
    """
    if not carries_clip(state):
        missing = [k for k in _NEEDED if not isinstance(state.get(k), Tensor)]
        raise WeightsError(f"{source} does not carry its CLIP (no {', '.join(missing)}); pass clip_weights=<the "
                           f"CLIP file it was trained with>")
    arch = _architecture(clip_model, state, source)
    clip = load_clip(arch, None, quick_gelu=True, frozen=True, **load_kwargs)
    clip.source = f"the CLIP inside {source}"
    model = clip.model
    own = model.state_dict()
    theirs = official_clip_tensors(state)
    if "positional_embedding" not in own and "text.positional_embedding" in own:  # CustomTextCLIP layout
        theirs = {(k if k.startswith("visual.") else f"text.{k}"): v for k, v in theirs.items()}
    unexpected = sorted(k for k in theirs if k not in own)
    missing = sorted(k for k in own if k not in theirs and not k.endswith(("logit_scale", "logit_bias")))
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in theirs.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if unexpected or missing or shapes:
        parts = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                 for label, items in (("shape mismatches", shapes), ("tensors the model lacks", unexpected),
                                      ("tensors the file lacks", missing)) if items]
        raise WeightsError(f"the CLIP inside {source} does not fit open_clip architecture {clip_model!r} ("
                           + "; ".join(parts) + "); pass the clip_model the checkpoint was trained with")
    # logit_scale (and logit_bias) are not in the file and WeakCLIP never uses them: keep the model's.
    merged = {**own, **{k: v.to(own[k].dtype) for k, v in theirs.items()}}
    model.load_state_dict(merged, strict=True)
    clip.clear_text_cache()
    return clip
