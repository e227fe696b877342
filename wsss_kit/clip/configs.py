"""CLIP architectures as data: open_clip model configs registered by name, from a file or a mapping.

An architecture is open_clip's model-config schema: ``embed_dim`` (the joint embedding size ``E``),
``vision_cfg`` (image tower: ``image_size``, ``layers``, ``width``, ``patch_size``, ``head_width``...)
and ``text_cfg`` (text tower: ``context_length``, ``vocab_size``, ``width``, ``heads``, ``layers``).
:func:`register_clip_config` checks the dimensions and registers one with open_clip, after which
it is built by name like open_clip's own ``ViT-B-16`` (no ``local-dir:`` folder, no warning).
:func:`clip_architecture` turns what a user may write for ``clip_model`` (a registered name, a
path to such a JSON file, or an inline mapping in a YAML config) into a registered name.

The JSON files in ``wsss_kit/clip/model_configs/`` are registered through the same function the
first time a CLIP model is built (:func:`register_model_configs`). ``wsss-tiny-clip`` is a randomly
initialised 2-block ViT (patch 16, 64×64 native input, width 64) with a 2-block text transformer
(width 64, the real 49408-token vocabulary and context length 77) and a 32-d joint embedding: it
has the structure of CLIP ViT-B/16 at a size that builds in milliseconds, for tests and the demo.
``wsss-synthetic-clip`` (:data:`SYNTHETIC_CLIP`) is the embedded world's CLIP: a 4-block ViT (patch 8 on
the world's 128×128 images, a 16×16 token grid fine enough for dense matching; width 128, 32-d heads),
a 3-block text transformer (width 64, 2 heads, the 49408-token vocabulary, context length 32) and a
64-d joint embedding, with shipped weights ``released:wsss_synthetic_clip``. To ship another
architecture, add its JSON file to that folder; nothing else changes.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CONFIG_DIR", "SYNTHETIC_CLIP", "TINY_CLIP", "clip_architecture", "register_clip_config",
           "register_model_configs",
           "validate_clip_config"]

CONFIG_DIR = Path(__file__).parent / "model_configs"
"""Folder of the shipped open_clip model configs (package data)."""

TINY_CLIP = "wsss-tiny-clip"
"""Name of the tiny test architecture (vision width 64, 2 blocks, patch 16; text width 64; E = 32)."""

SYNTHETIC_CLIP = "wsss-synthetic-clip"
"""Name of the embedded world's CLIP (128-px ViT, patch 8, 4 blocks; text context 32; E = 64), whose
pretrained weights ship with wsss_kit as ``released:wsss_synthetic_clip``."""

CLIP_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
"""The keys every architecture has (open_clip's model-config schema)."""

_OPTIONAL_TOP_KEYS = ("quick_gelu", "init_logit_scale", "init_logit_bias", "nonscalar_logit_scale", "cast_dtype",
                      "custom_text", "multimodal_cfg")
_POSITIVE_INTS = {
    "vision_cfg": ("layers", "width", "head_width", "patch_size", "image_size"),
    "text_cfg": ("context_length", "vocab_size", "width", "heads", "layers"),
}
"""Dimensions checked to be positive ints (``layers``/``image_size`` of a vision tower may also be lists)."""

_registered = False
_lock = threading.RLock()
_sources: dict[str, str] = {}
"""name → where wsss_kit registered it from (a file path or ``"inline mapping"``)."""


def _fields(kind: str) -> list[str]:
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    return [f.name for f in dataclasses.fields(CLIPVisionCfg if kind == "vision_cfg" else CLIPTextCfg)]


def _unknown(key: str, known: list[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return ValueError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(known)}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_clip_config(cfg: Any, source: str = "CLIP architecture") -> dict[str, Any]:
    """Check an open_clip model config and return a deep copy as a plain dict.

    Required: ``embed_dim`` (positive int); ``vision_cfg`` with ``image_size``, ``layers``,
    ``width`` and (for a ViT, ``layers`` an int) ``patch_size``, unless it names a
    ``timm_model_name``; ``text_cfg`` with ``width``, ``heads``, ``layers``, unless it names an
    ``hf_model_name``. Keys must be open_clip's (``CLIPVisionCfg``/``CLIPTextCfg`` fields), dimensions
    positive ints, the vision ``width`` a multiple of ``head_width`` (open_clip's default 64) and the
    text ``width`` a multiple of ``heads``.

    Raises:
        ValueError: naming ``source`` and the missing or bad key (``vision_cfg.width`` ...), what
            was expected and what came.
    """
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{source}: an architecture is a mapping with {', '.join(CLIP_CONFIG_KEYS)} (open_clip's "
                         f"model-config schema); got {type(cfg).__name__}")
    for key in CLIP_CONFIG_KEYS:
        if key not in cfg:
            raise ValueError(f"{source}: missing key {key!r}; an architecture needs {', '.join(CLIP_CONFIG_KEYS)} "
                             f"(open_clip's model-config schema, e.g. wsss_kit/clip/model_configs/{TINY_CLIP}.json)")
    for key in cfg:
        if key not in CLIP_CONFIG_KEYS + _OPTIONAL_TOP_KEYS:
            raise _unknown(str(key), list(CLIP_CONFIG_KEYS + _OPTIONAL_TOP_KEYS), source)
    if not _positive_int(cfg["embed_dim"]):
        raise ValueError(f"{source}: embed_dim must be a positive int (the joint embedding size); "
                         f"got {cfg['embed_dim']!r}")
    for part in ("vision_cfg", "text_cfg"):
        sub = cfg[part]
        if not isinstance(sub, Mapping):
            raise ValueError(f"{source}: {part} must be a mapping of {part[:-4]} tower settings; got {sub!r}")
        known = _fields(part)
        for key in sub:
            if key not in known:
                raise _unknown(str(key), known, f"{source}: {part}")
        for key in _POSITIVE_INTS[part]:
            if key not in sub:
                continue
            value = sub[key]
            listed = key in ("layers", "image_size") and part == "vision_cfg" and isinstance(value, (list, tuple))
            if not (all(_positive_int(v) for v in value) and value if listed else _positive_int(value)):
                raise ValueError(f"{source}: {part}.{key} must be a positive int"
                                 + (" or a list of them" if key in ("layers", "image_size") and part == "vision_cfg"
                                    else "") + f"; got {value!r}")
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if "timm_model_name" not in vision:
        needed = ["image_size", "layers", "width"] + ([] if isinstance(vision.get("layers"), (list, tuple))
                                                      else ["patch_size"])
        _require(vision, needed, f"{source}: vision_cfg", "a ViT image tower (or name a timm_model_name)")
        if not isinstance(vision["layers"], (list, tuple)) and vision["width"] % vision.get("head_width", 64):
            raise ValueError(f"{source}: vision_cfg.width ({vision['width']}) must be a multiple of "
                             f"vision_cfg.head_width ({vision.get('head_width', 64)}, open_clip's default 64)")
    if "hf_model_name" not in text:
        _require(text, ["width", "heads", "layers"], f"{source}: text_cfg",
                 "a text transformer (or name an hf_model_name)")
        if text["width"] % text["heads"]:
            raise ValueError(f"{source}: text_cfg.width ({text['width']}) must be a multiple of "
                             f"text_cfg.heads ({text['heads']})")
    return json.loads(json.dumps(cfg))  # a deep, plain copy (YAML/ordered mappings → dicts)


def _require(sub: Mapping[str, Any], keys: list[str], where: str, what: str) -> None:
    for key in keys:
        if key not in sub:
            raise ValueError(f"{where}: missing key {key!r}; {what} needs {', '.join(keys)}")


def _model_configs() -> dict[str, Any]:
    from open_clip import factory

    table = getattr(factory, "_MODEL_CONFIGS", None)
    if not isinstance(table, dict):  # pragma: no cover - an open_clip without the table
        raise RuntimeError("this open_clip version has no open_clip.factory._MODEL_CONFIGS table; "
                           "wsss_kit cannot register CLIP architectures with it")
    return table


def register_clip_config(name: str, cfg: Mapping[str, Any], *, source: str | None = None,
                         replace: bool = False) -> str:
    """Register architecture ``cfg`` (open_clip's model-config schema) with open_clip as ``name``.

    After this, ``load_clip(name)``, ``open_clip.create_model(name)`` and
    ``open_clip.get_tokenizer(name)`` know it. Registering the same config again is a no-op;
    another config under a taken name is an error unless ``replace`` (or the name was registered
    from the same ``source`` file, re-read after an edit); open_clip's own names are never replaced.

    Args:
        name: the architecture name (not ``hf-hub:``/``local-dir:``).
        cfg: ``{"embed_dim": E, "vision_cfg": {...}, "text_cfg": {...}}``, see
            :func:`validate_clip_config`.
        source: where it came from, for messages (default: ``"CLIP architecture '<name>'"``).
        replace: overwrite a different config registered under ``name``.

    Returns:
        ``name``.

    Raises:
        ValueError: a bad name, a bad config (naming the key), or a name taken by another config.
    """
    if not isinstance(name, str) or not name.strip() or name.startswith(("hf-hub:", "local-dir:")) or "/" in name:
        raise ValueError(f"a CLIP architecture name must be a non-empty string without '/' or a hub/local-dir "
                         f"prefix; got {name!r}")
    where = source or f"CLIP architecture {name!r}"
    plain = validate_clip_config(cfg, where)
    with _lock:
        table = _model_configs()
        if name in table and table[name] != plain:
            same_file = source is not None and _sources.get(name) == source
            if name not in _sources:  # open_clip's own: every user of that name in this process would change
                raise ValueError(f"{where}: {name!r} is one of open_clip's own architectures and keeps its "
                                 f"config; choose another name")
            if not (replace or same_file):
                taken_by = _sources[name]
                raise ValueError(f"{where}: the name {name!r} is already registered with another architecture "
                                 f"(from {taken_by}); choose another name (a JSON file registers under its file "
                                 f"name) or pass replace=True")
        table[name] = copy.deepcopy(plain)
        _sources[name] = source or "register_clip_config"
    return name


def clip_architecture(spec: str | os.PathLike[str] | Mapping[str, Any]) -> str:
    """The registered architecture name for what a user wrote as ``clip_model``.

    Args:
        spec: an architecture name (``"ViT-B-16"``, ``"wsss-tiny-clip"``, ``hf-hub:...``: returned
            as it is; unknown names are reported when the model is built); a path to a JSON file in
            open_clip's model-config schema (a ``.json`` name, or an existing file), registered under
            the file's stem; or an inline mapping (a YAML ``clip_model: {embed_dim: ..., vision_cfg:
            ..., text_cfg: ...}``), registered as ``custom-clip-<hash of its content>``.

    Raises:
        ValueError: a missing or unreadable file, or a bad config (naming the file or mapping and the key).
        TypeError: anything else.
    """
    register_model_configs()
    if isinstance(spec, Mapping):
        plain = validate_clip_config(spec, "CLIP architecture (inline mapping)")
        digest = hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]
        return register_clip_config(f"custom-clip-{digest}", plain, source="an inline mapping")
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and (
            spec.lower().endswith(".json") or (os.sep in spec and Path(spec).expanduser().is_file()))):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ValueError(f"CLIP architecture file {path} does not exist; pass an open_clip model-config JSON "
                             f"file (embed_dim, vision_cfg, text_cfg), an architecture name or a mapping")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"CLIP architecture file {path} cannot be read as JSON: {exc}") from exc
        return register_clip_config(path.stem, cfg, source=f"CLIP architecture file {path.resolve()}")
    if isinstance(spec, str):
        return spec
    raise TypeError(f"clip_model must be an architecture name, a path to an open_clip model-config JSON file or "
                    f"a mapping (embed_dim, vision_cfg, text_cfg); got {type(spec).__name__}")


def register_model_configs() -> list[str]:
    """Register the configs in :data:`CONFIG_DIR` with open_clip (idempotent); return their names."""
    global _registered
    paths = sorted(CONFIG_DIR.glob("*.json"))
    with _lock:
        if not _registered:
            for path in paths:
                register_clip_config(path.stem, json.loads(path.read_text(encoding="utf-8")),
                                     source=f"wsss_kit's shipped config {path.name}")
            _registered = True
    return [p.stem for p in paths]
