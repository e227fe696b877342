"""Every weights file a run config will need, found before anything is built or downloaded.

:func:`required_weights` walks a resolved config. It records

- the value of every *weights keyword* of a node (``weights``, ``checkpoint``, ``init_checkpoint``,
  ``clip_weights``, ``encoder_weights``: any keyword named ``weights``/``checkpoint`` or ending in
  ``_weights``/``_checkpoint``), whatever its form;
- any other string with a ``released:``/``pypi:``/``timm:``/``open_clip:`` scheme or ending in a weights
  suffix (:data:`WEIGHT_SUFFIXES`), anywhere in the config;
- the defaults of the weights keywords a node leaves out, read from its plugin factory's signature
  (the plugin module is imported, nothing is built), ``clip_weights="default"`` expanded through
  :data:`wsss_kit.clip.DEFAULT_CLIP_WEIGHTS` for the node's ``clip_model``.

A plugin may declare ``checkpoint_replaces = ("weights", ...)``: when its node gives ``checkpoint``,
the run sets those keywords to None (:mod:`wsss_kit.pipeline.checkpoints`), so their files are listed
as not needed. A plugin whose checkpoints differ in what they carry may also have a callable
``checkpoint_provides(spec) -> tuple[str, ...]``: the keywords whose files this checkpoint makes
optional (e.g. an official WeakCLIP checkpoint carries its CLIP); a missing such file is then listed as
not needed, a present one stays present (the plugin compares it with the checkpoint's).
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PluginError, WSSSError
from .released import RELEASED, released_path, sha256_of
from .resolve import _SCHEME, WEIGHT_SUFFIXES, hub_offline, hub_tag_cached, resolve

__all__ = ["WeightsRequirement", "is_weights_keyword", "required_weights"]

_KEYWORD = re.compile(r"(^|_)(weights|checkpoint)$")

PRESENT, MISSING, CACHED, NOT_CACHED, NOT_NEEDED, INVALID, UNCHECKED = (
    "present", "missing", "cached", "not cached", "not needed (checkpoint given)", "invalid", "not checked")


@dataclass(frozen=True)
class WeightsRequirement:
    """One weights file (or hub tag) a config needs.

    ``status`` is one of ``present``, ``missing``, ``cached``/``not cached`` (hub tags),
    ``not needed (checkpoint given)``, ``invalid`` (the spec cannot name weights: unknown released
    name or tag, a folder) or ``not checked`` (a tag the plugin resolves itself, e.g. smp's
    ``imagenet``). ``verified`` (with ``verify=True``): ``ok``, ``mismatch`` or ``no reference``.
    """

    key: str
    """Dotted config path of the keyword, e.g. ``cam.model.weights``."""
    spec: str
    origin: str
    """``config`` (written in the config) or ``default`` (the plugin's default for a keyword left out)."""
    released: str | None
    filename: str | None
    source: str
    """Where to get the file, in words."""
    sha256: str | None
    """The reference SHA-256 (or prefix) when known."""
    location: str
    """The local path expected, or the hub tag."""
    status: str
    detail: str = ""
    """Why a file is missing or invalid (the loader's message)."""
    notes: str = ""
    """The released entry's notes (renaming the download, converting it, ...)."""
    verified: str | None = None
    actual_sha256: str | None = None

    @property
    def missing(self) -> bool:
        """Whether a run would stop for want of this file (a hub tag not cached counts only offline)."""
        return self.status in (MISSING, INVALID) or (self.status == NOT_CACHED and hub_offline())

    @property
    def problem(self) -> bool:
        """Missing (see :attr:`missing`) or, after verification, a file whose SHA-256 differs."""
        return self.missing or self.verified == "mismatch"


def is_weights_keyword(name: str) -> bool:
    """``weights``, ``checkpoint``, ``*_weights``, ``*_checkpoint``."""
    return bool(_KEYWORD.search(name))


def _is_weights_string(value: str) -> bool:
    return bool(_SCHEME.match(value)) or value.lower().endswith(WEIGHT_SUFFIXES)


def required_weights(cfg: Mapping[str, Any], *, source: str = "config",
                     verify: bool = False) -> list[WeightsRequirement]:
    """Every weights spec ``cfg`` names or leaves to a plugin default, with its status.

    Nothing is downloaded: hub tags are looked up in the local caches only. ``verify=True`` hashes
    every present file and compares it with the reference SHA-256 when one is known.

    Raises:
        ConfigError: a node's ``type`` names no installed plugin (the message names the key).
    """
    found: list[_Found] = []
    replaced: dict[str, str] = {}
    _walk(cfg, "", found, replaced, source)
    out = []
    for key, spec, origin, problem in found:
        if problem is None:
            req = _describe(key, spec, origin)
        else:
            req = _invalid({"key": key, "spec": spec, "origin": origin}, spec, problem)
        if replaced.get(key) == "replaced":
            req = replace(req, status=NOT_NEEDED, detail="")
        elif key in replaced and req.status == MISSING:  # optional: compared with the checkpoint's when here
            req = replace(req, status=NOT_NEEDED, detail=replaced[key])
        elif verify and req.status == PRESENT:
            req = _verify(req)
        out.append(req)
    return out


_Found = tuple[str, str, str, "str | None"]
"""(config key, spec, origin, problem found while reading the node or None)."""


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _walk(value: Any, where: str, found: list[_Found], replaced: dict[str, str], source: str) -> None:
    from ..config import is_node

    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(v, _join(where, i), found, replaced, source)
    elif is_node(value):
        _node(value, where, found, replaced, source)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _walk(v, _join(where, k), found, replaced, source)
    elif isinstance(value, str) and _is_weights_string(value):
        found.append((where, value, "config", None))


def _factory_defaults(kind: str, name: str, where: str, source: str) -> tuple[dict[str, Any], Any]:
    from ..registry import default_registry

    try:
        factory = default_registry().get(kind, name)
    except PluginError as exc:
        raise ConfigError(f"{source}: {where}.type: {exc}") from None
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}, factory
    defaults = {p.name: p.default for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}
    return defaults, factory


def _node(node: Mapping[str, Any], where: str, found: list[_Found], replaced: dict[str, str],
          source: str) -> None:
    from ..config import TYPE_KEY, split_type

    kind, name = split_type(node[TYPE_KEY], where or "config")
    defaults, factory = _factory_defaults(kind, name, where or "config", source)
    given = {k: v for k, v in node.items() if k != TYPE_KEY}
    keys: list[str] = []
    for key, value in given.items():
        here = _join(where, key)
        if is_weights_keyword(str(key)) and isinstance(value, (str, os.PathLike)):
            spec, problem = _expand_default(os.fspath(value), str(key), given, defaults)
            if spec is not None:
                found.append((here, spec, "config", problem))
                keys.append(str(key))
        else:
            _walk(value, here, found, replaced, source)
    for key, value in defaults.items():
        if key in given or not is_weights_keyword(key) or not isinstance(value, (str, os.PathLike)):
            continue
        spec, problem = _expand_default(os.fspath(value), key, given, defaults)
        if spec is not None:
            found.append((_join(where, key), spec, "default", problem))
            keys.append(key)
    if given.get("checkpoint") is not None:
        from ..pipeline.checkpoints import (
            checkpoint_replaces,  # the rule the run applies when it builds
        )

        for key in checkpoint_replaces(factory):
            if key in keys and key != "checkpoint":
                replaced[_join(where, key)] = "replaced"
        provides = getattr(factory, "checkpoint_provides", None)
        if callable(provides):  # what this checkpoint file carries (e.g. an official WeakCLIP checkpoint's CLIP)
            for key in provides(given["checkpoint"]):
                if key in keys:
                    replaced.setdefault(_join(where, key), f"the checkpoint {given['checkpoint']} carries these "
                                                           "weights (a file given too is compared with them)")


def _expand_default(value: str, key: str, given: Mapping[str, Any],
                    defaults: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``clip_weights: default`` → the released CLIP of the node's ``clip_model`` (None: random init).

    Returns ``(spec or None, problem or None)``; an architecture without a default is a problem,
    as it will be when the plugin builds (:func:`wsss_kit.clip.frozen_clip`).
    """
    if key != "clip_weights" or value != "default":
        return value, None
    from ..clip.loading import DEFAULT_CLIP_WEIGHTS

    model = given.get("clip_model", defaults.get("clip_model"))
    if not isinstance(model, str):
        return None, None  # a CLIPModel object built elsewhere: no file of its own here
    if model in DEFAULT_CLIP_WEIGHTS:
        return DEFAULT_CLIP_WEIGHTS[model], None
    return value, (f"clip_weights='default' knows the weights of {', '.join(DEFAULT_CLIP_WEIGHTS)} only, not "
                   f"clip_model {model!r}; give clip_weights (a file or released:<name>; null: random init)")


def _released_by_filename(path: Path) -> str | None:
    names = [n for n, e in sorted(RELEASED.items()) if e.filename == path.name]
    return names[0] if names else None


def _describe(key: str, spec: str, origin: str) -> WeightsRequirement:
    """Where ``spec`` lives and whether it is there, without loading it."""
    base = {"key": key, "spec": spec, "origin": origin}
    match = _SCHEME.match(spec)
    scheme = match.group(1) if match else None
    if scheme == "released":
        name = match.group(2)  # type: ignore[union-attr]
        entry = RELEASED.get(name)
        if entry is None:
            return _invalid(base, spec)
        path = released_path(entry)
        if entry.packaged:  # shipped with wsss_kit: missing only in a broken install or an unbuilt checkout
            why = ("the file shipped with wsss_kit is missing: reinstall wsss_kit"
                   + (f", or rebuild it with `{entry.reproduce}`" if entry.reproduce else ""))
        else:
            why = f"not downloaded: save {entry.filename!r} as {path}"
        return WeightsRequirement(**base, released=name, filename=entry.filename, source=entry.source,
                                  sha256=entry.sha256, location=str(path), notes=entry.notes,
                                  status=PRESENT if path.is_file() else MISSING,
                                  detail="" if path.is_file() else why)
    if scheme in ("timm", "open_clip"):
        try:
            cached = hub_tag_cached(spec)
        except (WSSSError, ImportError) as exc:
            return _invalid(base, spec, str(exc))
        twins = [n for n, e in sorted(RELEASED.items()) if spec in e.hub_tags]
        where = (f"{scheme} pretrained tag (Hugging Face hub cache)"
                 + (f"; the same weights as a file: released:{twins[0]}" if twins else ""))
        return WeightsRequirement(**base, released=None, filename=None, source=where,
                                  sha256=None, location=spec,  # the hub checks its own files
                                  status=CACHED if cached else NOT_CACHED)
    if scheme == "pypi":
        try:
            found = resolve(spec)
        except WSSSError as exc:
            return WeightsRequirement(**base, released=None, filename=None, source="an installed Python package",
                                      sha256=None, location=spec, status=MISSING, detail=str(exc))
        return WeightsRequirement(**base, released=None, filename=Path(found).name,
                                  source="an installed Python package", sha256=None, location=str(found),
                                  status=PRESENT)
    path = Path(spec).expanduser()
    looks_like_file = ("/" in spec or os.sep in spec or spec.startswith((".", "~"))
                       or spec.lower().endswith(WEIGHT_SUFFIXES))
    if not looks_like_file and not path.exists():
        # a bare word a plugin resolves itself (smp's "imagenet"); nothing to check here
        return WeightsRequirement(**base, released=None, filename=None, source="resolved by the plugin itself",
                                  sha256=None, location=spec, status=UNCHECKED)
    twin = _released_by_filename(path)
    entry = RELEASED[twin] if twin else None
    if path.is_dir():
        return _invalid(base, spec, f"{path} is a folder; expected a weights file")
    return WeightsRequirement(**base, released=twin, filename=path.name,
                              source=entry.source if entry else "a file you provide (or an earlier stage writes)",
                              sha256=entry.sha256 if entry else None, location=str(path),
                              status=PRESENT if path.is_file() else MISSING,
                              detail="" if path.is_file() else f"no file at {path}")


def _error_text(spec: str) -> str:
    try:
        resolve(spec)
    except WSSSError as exc:
        return str(exc)
    return ""


def _invalid(base: dict[str, str], spec: str, detail: str | None = None) -> WeightsRequirement:
    return WeightsRequirement(**base, released=None, filename=None, source="", sha256=None, location=spec,
                              status=INVALID, detail=detail if detail is not None else _error_text(spec))


def _verify(req: WeightsRequirement) -> WeightsRequirement:
    actual = sha256_of(req.location)
    if not req.sha256:
        return replace(req, verified="no reference", actual_sha256=actual)
    ok = actual.startswith(req.sha256.lower())
    return replace(req, verified="ok" if ok else "mismatch", actual_sha256=actual)
