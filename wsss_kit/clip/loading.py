"""Building an open_clip model from an architecture name plus a local weights file (or a hub tag).

The weights never come from open_clip's own download logic unless the spec is an explicit
``open_clip:<model>/<tag>`` tag: files are read with :func:`wsss_kit.weights.load_state_dict`
(``weights_only`` for pickles, ``torch.jit.load`` for OpenAI's TorchScript archives) and checked
key by key against the architecture, so that a file of another model fails with a message naming
the file, the model and the first mismatching keys and shapes.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from ..weights.loading import _is_torchscript, describe_key_problems, load_state_dict
from ..weights.resolve import resolve
from .configs import SYNTHETIC_CLIP, TINY_CLIP, clip_architecture, register_model_configs
from .model import CLIPModel
from .preprocessing import Normalization

__all__ = ["ArchitectureSpec", "build_open_clip_model", "describe_architecture", "load_clip"]

ArchitectureSpec = str | os.PathLike[str] | Mapping[str, Any]
"""An architecture name, a path to an open_clip model-config JSON file, or such a mapping."""

_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
"""Integer entries of OpenAI's TorchScript state dicts that are not parameters."""


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" warning while we load the weights ourselves."""
    root = logging.getLogger()
    flt = _DropRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _check_name(name: str) -> None:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")):
        return
    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise ValueError(f"unknown open_clip architecture {name!r}{hint}; see open_clip.list_models() "
                         f"({len(known)} known, e.g. 'ViT-B-16', 'ViT-B-32', 'wsss-tiny-clip'), or describe your "
                         f"own: a model-config JSON file or mapping (embed_dim, vision_cfg, text_cfg), "
                         f"see docs/clip.md")


def describe_architecture(state: dict[str, Tensor]) -> str:
    """A short description of the vision tower a CLIP state dict holds (for error messages)."""
    conv = state.get("visual.conv1.weight")
    if conv is None or conv.dim() != 4:
        return "no ViT vision tower ('visual.conv1.weight' missing)"
    blocks = {k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}
    text = state.get("ln_final.weight", state.get("text.ln_final.weight"))
    text_w = f", text width {text.shape[0]}" if text is not None else ""
    return f"ViT with width {conv.shape[0]}, patch {conv.shape[-1]}, {len(blocks)} blocks{text_w}"


def _normalise_state(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """OpenAI / older open_clip layouts → the layout of ``model``."""
    from open_clip.model import convert_to_custom_text_state_dict

    # TorchScript archives also carry non-persistent buffers (the text causal mask).
    transient = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    state = {k: v for k, v in state.items() if k not in _OPENAI_EXTRA_KEYS and k not in transient}
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    own = model.state_dict()
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in own and state[key].numel() == own[key].numel():
            state[key] = state[key].reshape(own[key].shape)
    if "logit_bias" in own and "logit_bias" not in state:
        state["logit_bias"] = own["logit_bias"].clone()
    return state


def _load_file(model: nn.Module, name: str, path: Path) -> None:
    state = _normalise_state(model, load_state_dict(path))
    own = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        problems = describe_key_problems((("shape mismatches", mismatched), ("missing keys", missing),
                                          ("unexpected keys", unexpected)), shown=4, sep="; ")
        raise WeightsError(
            f"weights file {path} does not fit open_clip model {name!r}: " + problems
            + f". The file holds a {describe_architecture(state)}; the model is a "
            f"{describe_architecture(own)}. Pass the architecture name the file was trained with "
            f"(e.g. 'ViT-B-32' for ViT-B-32.pt)"
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def build_open_clip_model(name: ArchitectureSpec, weights: str | os.PathLike[str] | None = None, *,
                          quick_gelu: bool | None = None) -> tuple[nn.Module, str, bool]:
    """Build open_clip architecture ``name`` and load ``weights`` into it (float32, eval mode).

    Args:
        name: an open_clip architecture (``"ViT-B-16"``, ``"ViT-B-32"``, ``"wsss-tiny-clip"``...),
            a path to a JSON file in open_clip's model-config schema, or such a mapping (see
            :func:`wsss_kit.clip.clip_architecture`).
        weights: ``None`` (random init), anything :func:`wsss_kit.weights.resolve` accepts: a
            local file (open_clip state dict, safetensors, or an OpenAI TorchScript ``.pt``),
            ``"released:clip_vit_b16_openai"``, or ``"open_clip:<name>/<tag>"`` (loaded by
            open_clip from its cache; under ``HF_HUB_OFFLINE=1`` an uncached tag fails at once).
        quick_gelu: use QuickGELU activations. ``None`` (auto): on for OpenAI weights (TorchScript
            files and tags whose open_clip config says so), otherwise as the architecture says.

    Returns:
        ``(model, source, quick_gelu)``: the open_clip ``CLIP``/``CustomTextCLIP`` module, a
        description of where its weights came from, and whether QuickGELU is in use.

    Raises:
        ValueError: unknown architecture name.
        WeightsError: missing file, uncached tag offline, or weights of another architecture
            (naming the file, the model name and the mismatching keys/shapes).
    """
    import open_clip

    register_model_configs()
    name = clip_architecture(name)
    _check_name(name)
    if weights is None:
        quick = bool(quick_gelu)
        with _quiet_random_init():
            model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick)
        return model.float().eval(), "random initialisation", _uses_quick_gelu(model)

    purpose = f"weights for CLIP model {name!r}"
    resolved = resolve(weights, purpose=purpose)
    if isinstance(resolved, str):
        if not resolved.startswith("open_clip:"):
            raise WeightsError(f"{purpose}: {resolved!r} is not an open_clip tag; pass a file, "
                               f"'released:<name>' or 'open_clip:<model>/<tag>'")
        tag_model, _, tag = resolved[len("open_clip:"):].partition("/")
        if tag_model != name:
            raise WeightsError(f"{purpose}: tag {resolved!r} is for architecture {tag_model!r}, not {name!r}")
        if quick_gelu is None:
            quick_gelu = bool(open_clip.get_pretrained_cfg(tag_model, tag).get("quick_gelu", False))
        try:
            model = open_clip.create_model(name, pretrained=tag, force_quick_gelu=quick_gelu)
        except Exception as exc:  # noqa: BLE001 - download/cache failures become one clear error
            raise WeightsError(f"{purpose}: open_clip could not load {resolved!r}: {type(exc).__name__}: "
                               f"{exc}; pass a local weights file instead") from exc
        return model.float().eval(), resolved, _uses_quick_gelu(model)

    path = Path(resolved)
    if quick_gelu is None:
        quick_gelu = _is_torchscript(path)  # OpenAI's archives; all were trained with QuickGELU
    with _quiet_random_init():
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    _load_file(model, name, path)
    return model.float().eval(), str(path), _uses_quick_gelu(model)


def _uses_quick_gelu(model: nn.Module) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def load_clip(name: ArchitectureSpec, weights: str | os.PathLike[str] | None = None,
              device: str | torch.device | None = None,
              precision: str = "auto", frozen: bool = True, *, keep_eval: bool | None = None,
              normalization: Normalization = "clip", pos_interpolation: str = "bicubic",
              quick_gelu: bool | None = None, text_cache_size: int = 32,
              fused_attention: bool = True) -> CLIPModel:
    """Build CLIP architecture ``name`` with ``weights`` and wrap it in a :class:`CLIPModel`.

    Args:
        name: open_clip architecture, e.g. ``"ViT-B-16"``, ``"ViT-B-32"``, ``"wsss-tiny-clip"``; or a
            custom one as data: a path to an open_clip model-config JSON file (registered under the
            file's stem) or a mapping ``{embed_dim, vision_cfg, text_cfg}`` (see
            :func:`wsss_kit.clip.clip_architecture`, :func:`wsss_kit.clip.register_clip_config`).
        weights: ``None`` (random), a local file (OpenAI TorchScript ``.pt``, open_clip ``.bin`` /
            ``.safetensors``), ``"released:clip_vit_b16_openai"``, or ``"open_clip:ViT-B-16/openai"``
            (a hub tag, only where the network or cache allows; ``HF_HUB_OFFLINE=1`` makes an
            uncached tag fail at once with a :class:`~wsss_kit.WeightsError` naming the file to bring).
        device: where to put it (default: stays on CPU; a parent module's ``.to()`` moves it).
        precision, frozen, keep_eval, normalization, pos_interpolation, text_cache_size,
            fused_attention: see :class:`CLIPModel`.
        quick_gelu: QuickGELU activations; ``None`` = on for OpenAI weights (their TorchScript
            files and ``/openai`` tags), else as the architecture config says.

    Raises:
        ValueError: unknown architecture or option. WeightsError: see :func:`build_open_clip_model`.
    """
    import open_clip

    name = clip_architecture(name)
    model, source, _ = build_open_clip_model(name, weights, quick_gelu=quick_gelu)
    tokenizer = open_clip.get_tokenizer(name)
    clip = CLIPModel(model, tokenizer, name=name, source=source, precision=precision, frozen=frozen,
                     keep_eval=keep_eval, normalization=normalization, pos_interpolation=pos_interpolation,
                     text_cache_size=text_cache_size, fused_attention=fused_attention)
    return clip.to(device) if device is not None else clip


DEFAULT_CLIP_WEIGHTS: dict[str, str | None] = {
    "ViT-B-32": "released:clip_vit_b32_openai",
    "ViT-B-16": "released:clip_vit_b16_openai",
    TINY_CLIP: None,
    SYNTHETIC_CLIP: "released:wsss_synthetic_clip",
}
"""What ``weights="default"`` means per architecture in :func:`frozen_clip` (``None``: random init,
for the tiny test model; the embedded world's CLIP: its weights shipped with wsss_kit)."""


def frozen_clip(clip_model: "ArchitectureSpec | CLIPModel", weights: Any = "default", *, owner: str = "this model",
                **load_kwargs: Any) -> CLIPModel:
    """A frozen CLIP for a plugin that trains through it (CLIMS, POLE, WeakCLIP).

    ``clip_model`` is an open_clip architecture name, a path to a model-config JSON file or an inline
    mapping (built with :func:`load_clip`, ``weights`` ``"default"`` taken from
    :data:`DEFAULT_CLIP_WEIGHTS`), or an existing frozen :class:`CLIPModel`, returned as it is.
    ``owner`` names the caller in error messages.
    """
    if isinstance(clip_model, CLIPModel):
        if not clip_model.frozen:
            raise ValueError(f"{owner} trains through a frozen CLIP: pass a frozen CLIPModel "
                             f"(load_clip(..., frozen=True) or clip.freeze())")
        return clip_model
    if not isinstance(clip_model, (str, os.PathLike, Mapping)):
        raise TypeError(f"clip_model must be an open_clip architecture name, a model-config JSON file, a mapping "
                        f"(embed_dim, vision_cfg, text_cfg) or a wsss_kit.clip.CLIPModel; "
                        f"got {type(clip_model).__name__}")
    clip_model = clip_architecture(clip_model)
    if isinstance(weights, str) and weights == "default":
        if clip_model not in DEFAULT_CLIP_WEIGHTS:
            raise ValueError(f"clip_weights='default' knows the weights of {', '.join(DEFAULT_CLIP_WEIGHTS)}; "
                             f"pass clip_weights=<file or released:name> for {clip_model!r} (None: random)")
        weights = DEFAULT_CLIP_WEIGHTS[clip_model]
    return load_clip(clip_model, weights, frozen=True, **load_kwargs)
