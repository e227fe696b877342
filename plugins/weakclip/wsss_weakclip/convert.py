"""Official WeakCLIP checkpoints (mmsegmentation ``WeakCLIP`` segmentor) → :class:`~wsss_weakclip.WeakCLIPNet`.

The official checkpoint (``{"state_dict": ..., "meta": ...}``, github hustvl/WeakCLIP) holds::

    backbone.conv1/class_embedding/positional_embedding/ln_pre/transformer/ln_post/proj   CLIP ViT (frozen)
    backbone.fpn1.{0,1,2,4}  backbone.fpn2.{0,1}  backbone.fpn3  backbone.fpn4.0           pyramid adapter
    text_encoder.token_embedding/positional_embedding/transformer/ln_final/text_projection  CLIP text (frozen)
    contexts (1, N, W)   gamma (E,)   beta (E,)                                            prompt, residual scales
    context_decoder.{memory_proj,text_proj,decoder.i,out_proj,anti_decoder.i,anti_out_proj}   co-attention
    neck.{lateral_convs,fpn_convs}.i.conv                                                  FPN neck
    decode_head.scale_heads.i.j.{conv,bn}   decode_head.conv_seg                             FPN head

and this plugin's layout is ``prompt.context`` (N, W), ``matching.*``, ``adapter.levels.i.*``,
``decoder.neck.*``, ``decoder.head.*`` (see :func:`convert_official_weakclip` for the map). Any
width, depth, number of context vectors, layers and classes converts.

**CLIP weights.** The converter drops the CLIP tensors: they are OpenAI's CLIP weights unchanged
(the official config trains ``backbone`` and ``text_encoder`` with learning rate 0), except the
position embeddings, which the official code stores already resized (the image table to
``512 // patch`` per side, the text table cut to 5 + N rows). The CLIP itself is built either from
those tensors (:func:`wsss_weakclip.official_clip.clip_from_official`, at the stored sizes; the
refiner does this when no ``clip_weights`` are given) or from ``clip_weights`` (OpenAI's file for
ViT-B/16); :func:`load_official_checkpoint` compares the file's CLIP tensors with the model's:
different weights (another CLIP, or a random one) give a warning (``clip_check="warn"``) or an
error naming the first differing tensors (``"error"``, the refiner's choice).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from wsss_kit.clip import interpolate_pos_embed
from wsss_kit.errors import WeightsError
from wsss_kit.weights import load_state_dict, load_weights_into, register_converter

if TYPE_CHECKING:
    from .model import WeakCLIPNet

__all__ = ["CLIP_CHECKS", "convert_official_weakclip", "is_official_layout", "load_official_checkpoint",
           "official_clip_tensors", "official_dims", "official_state_for"]

CLIP_CHECKS = ("warn", "error", "off")

_ADAPTER = re.compile(r"^backbone\.fpn([1-4])\.(.+)$")
_LAYER = re.compile(r"^context_decoder\.(decoder|anti_decoder)\.(\d+)\.(.+)$")
_SEQ = {"context_decoder.memory_proj.": "matching.visual_in.", "context_decoder.text_proj.": "matching.text_in.",
        "context_decoder.out_proj.": "matching.text_out.", "context_decoder.anti_out_proj.": "matching.visual_out."}
_ATTN = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "proj": "out"}
_MLP = {"0": "fc1", "3": "fc2"}
_NECK = re.compile(r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)$")
_HEAD = re.compile(r"^decode_head\.scale_heads\.(\d+)\.(\d+)\.(conv|bn)\.(.+)$")
_CLIP_PREFIXES = ("backbone.", "text_encoder.")
_NO_PARAMS = ("identity_head.", "auxiliary_head.", "decode_head.loss_decode.")


def is_official_layout(state_dict: Mapping[str, Any]) -> bool:
    """Whether ``state_dict`` is an official WeakCLIP (mmseg segmentor) state dict."""
    return any(k.startswith(("context_decoder.", "decode_head.scale_heads.")) or k == "contexts" for k in state_dict)


def official_dims(state_dict: Mapping[str, Tensor]) -> dict[str, int | None]:
    """Sizes read off an official state dict (``None`` where the file does not tell).

    Keys: ``vision_width`` (C), ``embed_dim`` (E), ``text_width`` (W), ``num_classes`` (K),
    ``n_context`` (N), ``matching_layers``, ``matching_width``.
    """
    s = state_dict

    def dim(key: str, axis: int) -> int | None:
        t = s.get(key)
        return int(t.shape[axis]) if isinstance(t, Tensor) and -t.dim() <= axis < t.dim() else None

    vision = dim("backbone.conv1.weight", 0) or dim("backbone.fpn3.weight", 0) or dim("backbone.ln_post.weight", 0)
    embed = dim("backbone.proj", 1) or dim("gamma", 0) or dim("context_decoder.memory_proj.0.weight", 0)
    text = dim("contexts", -1) or dim("text_encoder.token_embedding.weight", 1)
    classes = dim("decode_head.conv_seg.weight", 0)
    layers = {int(m.group(2)) for k in s if (m := _LAYER.match(k)) and m.group(1) == "decoder"}
    return {"vision_width": vision, "embed_dim": embed, "text_width": text, "num_classes": classes,
            "n_context": dim("contexts", -2), "matching_layers": max(layers) + 1 if layers else None,
            "matching_width": dim("context_decoder.text_proj.1.weight", 0)}


def _convert_key(key: str) -> str | None:
    """The plugin key of an official key; ``None`` for keys that are dropped; ``""`` for unknown ones."""
    if key == "contexts":
        return "prompt.context"
    if key in ("gamma", "beta"):
        return f"matching.{key}"
    if m := _ADAPTER.match(key):
        level, rest = int(m.group(1)) - 1, m.group(2)
        return f"adapter.levels.{level}.0.{rest}" if level == 2 else f"adapter.levels.{level}.{rest}"
    if key.startswith(_CLIP_PREFIXES) or key.startswith(_NO_PARAMS):
        return None
    for old, new in _SEQ.items():
        if key.startswith(old):
            return new + key[len(old):]
    if m := _LAYER.match(key):
        stream = "text_layers" if m.group(1) == "decoder" else "visual_layers"
        parts = m.group(3).split(".")
        if parts[0] in ("self_attn", "cross_attn") and len(parts) == 3 and parts[1] in _ATTN:
            parts[1] = _ATTN[parts[1]]
        elif parts[0] == "mlp" and len(parts) == 3 and parts[1] in _MLP:
            parts[1] = _MLP[parts[1]]
        elif parts[0] not in ("norm1", "norm2", "norm3"):
            return ""
        return f"matching.{stream}.{m.group(2)}." + ".".join(parts)
    if m := _NECK.match(key):
        kind = "lateral" if m.group(1) == "lateral_convs" else "output"
        return f"decoder.neck.{kind}.{m.group(2)}.{m.group(3)}"
    if m := _HEAD.match(key):
        j = int(m.group(2))
        if j % 2:
            return ""  # odd indices are the parameter-free upsampling layers
        return f"decoder.head.branches.{m.group(1)}.{j // 2}.{m.group(3)}.{m.group(4)}"
    if key.startswith("decode_head.conv_seg."):
        return "decoder.head.classifier." + key[len("decode_head.conv_seg."):]
    return ""


@register_converter("weakclip_official")
def convert_official_weakclip(state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """Official WeakCLIP state dict → this plugin's :class:`~wsss_weakclip.WeakCLIPNet` layout (CLIP keys dropped).

    Official key → plugin key:

    * ``contexts`` (1, N, W) → ``prompt.context`` (N, W);
    * ``gamma``, ``beta`` → ``matching.gamma``, ``matching.beta``;
    * ``context_decoder.memory_proj.i`` / ``text_proj.i`` / ``out_proj.i`` / ``anti_out_proj.i`` →
      ``matching.visual_in.i`` / ``text_in.i`` / ``text_out.i`` / ``visual_out.i``;
    * ``context_decoder.decoder.l.*`` / ``anti_decoder.l.*`` → ``matching.text_layers.l.*`` /
      ``matching.visual_layers.l.*``, inside which ``{self,cross}_attn.{q,k,v}_proj`` → ``.{q,k,v}``,
      ``{self,cross}_attn.proj`` → ``.out``, ``mlp.0`` / ``mlp.3`` → ``mlp.fc1`` / ``mlp.fc2``, ``norm1..3`` kept;
    * ``backbone.fpn{1,2,4}.i`` → ``adapter.levels.{0,1,3}.i``; ``backbone.fpn3`` → ``adapter.levels.2.0``;
    * ``neck.lateral_convs.i.conv`` / ``neck.fpn_convs.i.conv`` → ``decoder.neck.lateral.i`` /
      ``decoder.neck.output.i``;
    * ``decode_head.scale_heads.i.(2j).{conv,bn}`` → ``decoder.head.branches.i.j.{conv,bn}`` (the odd indices
      are parameter-free upsampling layers); ``decode_head.conv_seg`` → ``decoder.head.classifier``;
    * the other ``backbone.*`` and all ``text_encoder.*`` keys (frozen CLIP) are dropped (see the module docstring).

    Raises:
        WeightsError: not an official WeakCLIP state dict, or keys this converter does not know
            (naming ``source`` and the keys).
    """
    if not is_official_layout(state_dict):
        raise WeightsError(f"{source} is not an official WeakCLIP checkpoint: it has no context_decoder.*, "
                           f"decode_head.scale_heads.* or contexts keys (first keys: {list(state_dict)[:5]})")
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        new = _convert_key(key)
        if new is None:
            continue
        if not new:
            unknown.append(key)
            continue
        if new == "prompt.context" and value.dim() == 3:
            if value.shape[0] != 1:
                raise WeightsError(f"{source}: contexts has shape {tuple(value.shape)}; expected (1, N, W) shared "
                                   f"context vectors")
            value = value[0]
        out[new] = value
    if unknown:
        more = f" ... (+{len(unknown) - 6} more)" if len(unknown) > 6 else ""
        raise WeightsError(f"{source}: {len(unknown)} keys of no known WeakCLIP module: {', '.join(unknown[:6])}{more}")
    return out


def load_official_checkpoint(model: WeakCLIPNet, checkpoint: str | os.PathLike[str] | Mapping[str, Tensor], *,
                             clip_check: str = "warn", strict: bool = True) -> WeakCLIPNet:
    """Load an official WeakCLIP checkpoint (file or state dict) into ``model``; returns ``model``.

    The model must have the checkpoint's structure: the ``official`` preset (or any preset with
    the same modules), the CLIP architecture the checkpoint was trained with, and its class names
    (``K`` classes, background included). ``clip_check``: compare the CLIP weights inside the file
    with the model's CLIP and ``"warn"`` / ``"error"`` when they differ, or ``"off"``.

    Raises:
        WeightsError: naming the file — not a WeakCLIP checkpoint, a CLIP of another width, another
            class count, a structure the model was not built with, or (``clip_check="error"``)
            other CLIP weights.
    """
    if clip_check not in CLIP_CHECKS:
        raise ValueError(f"clip_check must be one of {', '.join(CLIP_CHECKS)}, got {clip_check!r}")
    if isinstance(checkpoint, Mapping):
        state = dict(checkpoint.get("state_dict", checkpoint)) if isinstance(checkpoint.get("state_dict"), Mapping) \
            else dict(checkpoint)
        source = "the official WeakCLIP state dict"
    else:
        path = Path(checkpoint).expanduser()
        state = load_state_dict(path)
        source = f"weights file {path}"
    converted = official_state_for(model, state, source=source, clip_check=clip_check)
    load_weights_into(model, converted, strict=strict, source=f"{source} (official WeakCLIP, converted)")
    model.clear_text_cache()
    return model


def official_state_for(model: WeakCLIPNet, state: Mapping[str, Tensor], *, source: str = "checkpoint",
                       clip_check: str = "warn") -> dict[str, Tensor]:
    """An official WeakCLIP state dict, checked against ``model`` and converted: the state to load
    strictly into ``model`` (its own extra-state entries, e.g. the prompt's class names, added).

    ``clip_check``: the CLIP tensors of the file against the model's CLIP (``"warn"``, ``"error"``,
    ``"off"``). Raises :class:`WeightsError` naming ``source`` (see :func:`load_official_checkpoint`).
    """
    if clip_check not in CLIP_CHECKS:
        raise ValueError(f"clip_check must be one of {', '.join(CLIP_CHECKS)}, got {clip_check!r}")
    if not is_official_layout(state):
        raise WeightsError(f"{source} is not an official WeakCLIP checkpoint (no context_decoder.*, "
                           f"decode_head.scale_heads.* or contexts keys; first keys: {list(state)[:5]})")
    _check_structure(model, state, source)
    converted = convert_official_weakclip(state, source=source)
    for key, value in model.state_dict().items():  # e.g. the prompt's class names, which the file lacks
        if key.endswith("._extra_state"):
            converted.setdefault(key, value)
    if clip_check != "off":
        _check_clip(model, state, source, clip_check)
    return converted


def _check_structure(model: WeakCLIPNet, state: Mapping[str, Tensor], source: str) -> None:
    d = official_dims(state)
    clip = model.clip
    ours = {"vision_width": model.width, "embed_dim": model.embed_dim, "text_width": clip.text_width}
    bad = [k for k, v in ours.items() if d[k] is not None and d[k] != v]
    if bad:
        theirs = ", ".join(f"{k.replace('_', ' ')} {d[k]}" for k in ours if d[k] is not None)
        mine = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ours.items())
        raise WeightsError(f"{source} was trained with a CLIP checkpoint of another width: it has {theirs}, but the "
                           f"model's CLIP {clip.name!r} has {mine}. Build the model with the CLIP architecture the "
                           f"checkpoint was trained with (ViT-B-16 for the released VOC/COCO checkpoints)")
    if d["num_classes"] is not None and d["num_classes"] != model.num_classes:
        raise WeightsError(f"{source} predicts {d['num_classes']} classes (background included) but the model was "
                           f"built with {model.num_classes} class names {list(model.class_names)[:6]}...; pass the "
                           f"checkpoint's class names (VOC: background + 20, COCO: background + 80)")
    s = model.settings
    checks = [
        ("contexts" in state, s["learnable_prompt"], "learnable context vectors (contexts)", "learnable_prompt"),
        (any(k.startswith("context_decoder.") for k in state), s["co_attention"], "a co-attention module "
         "(context_decoder)", "co_attention"),
        (any(k.startswith("context_decoder.anti_decoder.") for k in state), s["co_attention"] and s["visual_update"],
         "a visual-update decoder (anti_decoder, beta)", "visual_update"),
        (any(k.startswith("backbone.fpn") for k in state), s["pyramid_adapter"], "a pyramid adapter (backbone.fpn*)",
         "pyramid_adapter"),
        (any(k.startswith("decode_head.") for k in state), s["decoder"] == "fpn", "an FPN decoder (neck, decode_head)",
         "decoder"),
    ]
    for has, built, what, key in checks:
        if has != bool(built):
            verb = "has" if has else "has no"
            raise WeightsError(f"{source} {verb} {what}, but the model was built with {key}={s[key]!r}; use the "
                               f"preset the checkpoint was trained with (preset='official')")
    if d["n_context"] is not None and d["n_context"] != s["n_context"]:
        raise WeightsError(f"{source} has {d['n_context']} context vectors but the model was built with "
                           f"n_context={s['n_context']}; pass n_context={d['n_context']}")
    if d["matching_layers"] is not None and s["co_attention"] and d["matching_layers"] != s["matching_layers"]:
        raise WeightsError(f"{source} has {d['matching_layers']} co-attention layers but the model was built with "
                           f"matching_layers={s['matching_layers']}; pass matching_layers={d['matching_layers']}")
    if d["matching_width"] is not None and s["co_attention"] and d["matching_width"] != s["matching_width"]:
        raise WeightsError(f"{source} has co-attention width {d['matching_width']} but the model was built with "
                           f"matching_width={s['matching_width']}; pass matching_width={d['matching_width']}")


def official_clip_tensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official file's CLIP tensors under open_clip ``CLIP`` names (position embeddings handled apart)."""
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.") and not _ADAPTER.match(key):
            out["visual." + key[len("backbone."):]] = value
        elif key.startswith("text_encoder."):
            out[key[len("text_encoder."):]] = value
    return out


def _check_clip(model: WeakCLIPNet, state: Mapping[str, Tensor], source: str, mode: str) -> None:
    clip = model.clip
    own = clip.model.state_dict()
    if "positional_embedding" not in own and "text.positional_embedding" in own:  # CustomTextCLIP
        own = {(k[len("text."):] if k.startswith("text.") else k): v for k, v in own.items()}
    theirs = official_clip_tensors(state)
    differ = []
    compared = 0
    for key, value in theirs.items():
        mine = own.get(key)
        if mine is None or not isinstance(value, Tensor) or not value.is_floating_point():
            continue
        mine = mine.detach().float().cpu()
        value = value.detach().float().cpu()
        if key == "visual.positional_embedding" and mine.shape != value.shape:
            grid = int(round((value.shape[0] - 1) ** 0.5))
            if grid * grid + 1 != value.shape[0] or value.shape[1] != mine.shape[1]:
                continue
            mine = interpolate_pos_embed(mine, tuple(clip.visual.grid_size), (grid, grid), clip.pos_interpolation)
        elif key == "positional_embedding" and value.shape[0] < mine.shape[0]:
            mine = mine[: value.shape[0]]
        if mine.shape != value.shape:
            continue
        compared += 1
        delta = float((mine - value).abs().max()) if mine.numel() else 0.0
        if delta > 1e-4 * max(1.0, float(value.abs().max())):
            differ.append(f"{key} (max |Δ| {delta:.3g})")
    if differ:
        more = f" ... (+{len(differ) - 4} more)" if len(differ) > 4 else ""
        msg = (f"the CLIP weights inside {source} differ from the model's CLIP {clip.name!r} (from {clip.source}): "
               f"{len(differ)} of {compared} tensors, first {', '.join(differ[:4])}{more}. The official code keeps "
               f"CLIP frozen, so the two must be the same weights: give the CLIP file the checkpoint was trained "
               f"with (OpenAI's ViT-B-16 for the released checkpoints), or no clip_weights at all (the CLIP inside "
               f"the checkpoint is then used)")
        if mode == "error":
            raise WeightsError(msg)
        warnings.warn(msg, stacklevel=3)
