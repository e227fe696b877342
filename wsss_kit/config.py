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
from typing import Any, Iterable, Mapping, TypeGuard

import yaml

from .errors import ConfigError, PluginError
from .registry import accepted_kwargs, check_kind, default_registry, did_you_mean

__all__ = ["TYPE_KEY", "apply_overrides", "build", "check_keys", "dump_config", "get_path", "is_node", "load_config",
           "parse_config", "split_type", "validate"]

TYPE_KEY = "type"


MAX_CONFIG_NODES = 1_000_000
"""Most values (mappings, lists and scalars, each alias counted as often as it is used) that one
config file or one ``--set`` value may expand to; more is refused (a "billion laughs" file)."""

MAX_CONFIG_DEPTH = 100
"""Deepest nesting of mappings and lists that a config file or a ``--set`` value may have."""


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML run file and apply ``--set`` style overrides.

    Raises:
        ConfigError: the file is missing, is a folder or cannot be read, is not UTF-8 (naming the
            byte), is not valid YAML, repeats a key, expands beyond :data:`MAX_CONFIG_NODES` values
            or :data:`MAX_CONFIG_DEPTH` levels (aliases included) or refers to itself, its top level
            is not a mapping with string keys, or an override is malformed.
    """
    path = Path(path)
    cfg = parse_config(_read_config_text(path), source=str(path))
    return apply_overrides(cfg, overrides)


def _read_config_text(path: Path) -> str:
    """The text of a config file, or a ConfigError that says why it cannot be had."""
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise ConfigError(f"config file {str(path)!r} cannot be read: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text: the byte at offset {exc.start} "
            f"(line {line}, column {column}) "
            f"is 0x{data[exc.start]:02x}, which UTF-8 cannot start or continue a character with; "
            f"save the file as UTF-8 (it looks like another encoding, e.g. Latin-1 or UTF-16)"
        ) from None


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (YAML keeps the last one
    silently, so ``cam:`` written twice would drop the first section without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"key {key!r} appears twice (first on line {seen[key].line + 1}); keep one",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused and the result's size and depth bounded;
    errors start with ``what`` (e.g. ``"config run.yaml"``)."""
    try:
        value = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{what} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(
            f"{what} is nested too deeply to read (more than {MAX_CONFIG_DEPTH} levels of mappings and lists "
            f"are refused)"
        ) from None
    _check_expansion(value, what)
    return value


def _check_expansion(value: Any, what: str) -> None:
    """Walk ``value`` as the code that reads a config will (aliases expanded) and refuse it when it
    holds more than :data:`MAX_CONFIG_NODES` values, nests deeper than :data:`MAX_CONFIG_DEPTH`
    levels, or contains itself. PyYAML shares one object per anchor, so a small file can stand for
    an exponential tree; the walk stops as soon as a limit is passed."""
    budget = [MAX_CONFIG_NODES]
    on_path: set[int] = set()

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(
                f"{what} expands to more than {MAX_CONFIG_NODES:,} values (passed at {_dotted(path)}): "
                f"YAML aliases (*name) repeating anchored (&name) lists or mappings multiply its size "
                f"(a 'billion laughs' document); write the values out, or use fewer nested aliases"
            )
        if not isinstance(node, (dict, list)):
            return
        if len(path) >= MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{what} nests mappings and lists more than {MAX_CONFIG_DEPTH} levels deep (at {_dotted(path[:5])}...)"
            )
        if id(node) in on_path:
            raise ConfigError(
                f"{what}: the value at {_dotted(path)} contains itself through a YAML alias (*name inside the "
                f"&name it refers to); a config must be a finite tree"
            )
        on_path.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            walk(child, path + (key,))
        on_path.discard(id(node))

    walk(value, ())


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def parse_config(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse YAML text into a config dict; errors give the file, line and column.

    Raises:
        ConfigError: invalid YAML, a repeated key, a document expanding beyond the size or depth
            limits or containing itself, or a top level that is not a mapping with string keys.
    """
    cfg = _load_yaml(text, f"config {source}")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {source} must be a mapping at the top level, got {type(cfg).__name__}")
    bad = [k for k in cfg if not isinstance(k, str)]
    if bad:
        raise ConfigError(
            f"config {source}: top-level keys must be section names (strings), got {bad[0]!r} "
            f"({type(bad[0]).__name__}); quote it if it is meant as a name"
        )
    return cfg


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with each ``"a.b.c=value"`` applied (value parsed as YAML).

    Intermediate mappings are created when missing; indexing into a list uses an integer key
    (``stages.0=cams``). A value is bounded like a config file (:data:`MAX_CONFIG_NODES`,
    :data:`MAX_CONFIG_DEPTH`, no value containing itself).
    """
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key path")
        shown = item if len(item) <= 80 else item[:77] + "..."
        value = _load_yaml(raw, f"override {shown!r}: value") if raw.strip() else ""
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


def is_node(value: Any) -> TypeGuard[Mapping[str, Any]]:
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
