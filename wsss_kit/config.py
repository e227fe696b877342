"""Run configuration: YAML files whose nodes ``{type: "kind/name", ...}`` are built through the registry.

A config is a plain nested dict. Any mapping with a ``type`` key of the form ``"kind/name"`` (or
``"kind/dist:name"``) is a *node*: :func:`build` calls ``wsss_kit.create(kind, name, **rest)``, after
building nested nodes among its values. ``--set a.b=c`` overrides are applied with
:func:`apply_overrides`; values are parsed as YAML (``--set cam.train.lr=0.01``,
``--set data.train.augment=null``).

Every error is a :class:`~wsss_kit.errors.ConfigError` that names the file and the dotted path of
the bad key, and for a wrong keyword the valid ones.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import ConfigError, PluginError
from .registry import accepted_kwargs, check_kind, default_registry, did_you_mean

TYPE_KEY = "type"


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML run file and apply ``--set`` style overrides.

    Raises:
        ConfigError: the file is missing, is not valid YAML, its top level is not a mapping, or an
            override is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    cfg = parse_config(text, source=str(path))
    return apply_overrides(cfg, overrides)


def parse_config(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML text into a config dict; errors give the file, line and column."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config {source} is not valid YAML{where}: {problem}") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {source} must be a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with each ``"a.b.c=value"`` applied (value parsed as YAML).

    Intermediate mappings are created when missing; indexing into a list uses an integer key
    (``stages.0=cams``).
    """
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key path")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value {raw!r} is not valid YAML ({exc})") from None
        _set_path(out, key.split("."), value, item)
    return out


def _set_path(node: Any, parts: list[str], value: Any, item: str) -> None:
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(node, part, here, item)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {here!r} is a {type(node).__name__}, not a mapping")
        if node.get(part) is None:  # a missing key, or an empty YAML section (`seeds:`)
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, ".".join(parts), item)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(
            f"override {item!r}: {'.'.join(parts[:-1])!r} is a {type(node).__name__}, not a mapping"
        )


def _list_index(node: list[Any], part: str, here: str, item: str) -> int:
    try:
        index = int(part)
        node[index]
    except (ValueError, IndexError):
        raise ConfigError(
            f"override {item!r}: {here!r} indexes a list of {len(node)} items with {part!r}"
        ) from None
    return index


def get_path(cfg: Mapping[str, Any], dotted: str, default: Any = ..., source: str = "config") -> Any:
    """Look up ``"a.b.c"``; without a default a missing key is a ConfigError naming the path."""
    node: Any = cfg
    for depth, part in enumerate(dotted.split(".")):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            continue
        if default is not ...:
            return default
        parent = ".".join(dotted.split(".")[:depth]) or "<top level>"
        keys = sorted(node) if isinstance(node, Mapping) else []
        raise ConfigError(
            f"{source}: missing key {dotted!r} (no {part!r} under {parent}; keys there: {', '.join(keys) or 'none'})"
        )
    return node


def is_node(value: Any) -> bool:
    """True for a mapping with a ``type`` key: something :func:`build` turns into an object."""
    return isinstance(value, Mapping) and TYPE_KEY in value


def split_type(type_str: Any, where: str) -> tuple[str, str]:
    """``"cams/resnet_cam"`` → ``("cams", "resnet_cam")`` with errors naming ``where``."""
    if not isinstance(type_str, str) or "/" not in type_str:
        raise ConfigError(
            f"{where}.type must be 'kind/name' (e.g. 'cams/resnet_cam'), got {type_str!r}"
        )
    kind, name = type_str.split("/", 1)
    try:
        kind = check_kind(kind)
    except PluginError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    return kind, name


def build(node: Any, where: str = "config", **extra: Any) -> Any:
    """Build a node (and nested nodes) through the registry; non-nodes are returned unchanged.

    ``extra`` keywords are added to the node's own (config values win), e.g. ``num_classes`` that
    the pipeline knows from the dataset.
    """
    if isinstance(node, list):
        return [build(v, f"{where}.{i}") for i, v in enumerate(node)]
    if not is_node(node):
        if isinstance(node, Mapping):
            return {k: build(v, f"{where}.{k}") for k, v in node.items()}
        return node
    kind, name = split_type(node[TYPE_KEY], where)
    kwargs = {k: build(v, f"{where}.{k}") for k, v in node.items() if k != TYPE_KEY}
    for key, value in extra.items():
        kwargs.setdefault(key, value)
    registry = default_registry()
    _check_node_keywords(kind, name, kwargs, where)
    try:
        return registry.create(kind, name, **kwargs)
    except ConfigError:
        raise
    except PluginError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} ({kind}/{name}): {exc}") from exc


def _check_node_keywords(kind: str, name: str, keys: Iterable[str], where: str) -> None:
    try:
        factory = default_registry().get(kind, name)
    except PluginError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    valid = accepted_kwargs(factory)
    if valid is None:
        return
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        bad = unknown[0]
        raise ConfigError(
            f"{where}.{bad}: {kind}/{name} has no keyword {bad!r}{did_you_mean(bad, valid)}; "
            f"valid keywords: {', '.join(valid)}"
        )


def validate(node: Any, where: str = "config") -> None:
    """Check a node and its nested nodes without building anything: every ``type`` names an
    installed plugin and every keyword is accepted. Lets a long pipeline fail in its first
    second rather than after hours of training."""
    if isinstance(node, list):
        for i, v in enumerate(node):
            validate(v, f"{where}.{i}")
        return
    if not isinstance(node, Mapping):
        return
    if not is_node(node):
        for k, v in node.items():
            validate(v, f"{where}.{k}")
        return
    kind, name = split_type(node[TYPE_KEY], where)
    for k, v in node.items():
        if k != TYPE_KEY:
            validate(v, f"{where}.{k}")
    _check_node_keywords(kind, name, [k for k in node if k != TYPE_KEY], where)


def dump_config(cfg: Mapping[str, Any]) -> str:
    """YAML text of a config, keys in their given order."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def check_keys(section: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError naming ``where.key`` for any key of ``section`` not in ``allowed``."""
    allowed = list(allowed)
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(section).__name__}")
    for key in section:
        if key not in allowed:
            raise ConfigError(
                f"{where}.{key}: unknown key{did_you_mean(str(key), _best_matches(str(key), allowed))}; "
                f"valid keys: {', '.join(allowed)}"
            )


def _best_matches(word: str, choices: list[str], margin: float = 0.1) -> list[str]:
    """The choices nearly as close to ``word`` as the closest one: a typo of ``refiner`` suggests
    ``refiner``, not also ``refiner_train``."""
    scores = {c: difflib.SequenceMatcher(None, word, c).ratio() for c in choices}
    best = max(scores.values(), default=0.0)
    return [c for c in choices if scores[c] >= best - margin]
