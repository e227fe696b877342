"""The speed measures as data (timm-like registry): one :class:`Measure` record per measure, each
naming the input it grows (its sweep axis), the points of that sweep at three sizes (``tiny`` for
the tests, ``quick``, ``full``) and the function that measures one point.

Adding a measure is one :func:`register` call in :mod:`benchmarks.speed.measures`.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .harness import Timed

SIZES = ("tiny", "quick", "full")
"""Sweep sizes: ``tiny`` (seconds, for the tests), ``quick`` (the whole run in minutes), ``full``."""

OFFICIAL_REPOS = {"weakclip": "hustvl/WeakCLIP", "mctformer": "xulianuwa/MCTformer", "clims": "CVI-SZU/CLIMS"}
"""The official implementations a local checkout may be given for (``--official-<key> PATH``)."""


@dataclass(frozen=True)
class Context:
    """How to measure: the device, counted rounds and warm-up rounds per point, and local checkouts
    of official implementations (key of :data:`OFFICIAL_REPOS` → path)."""

    device: torch.device = torch.device("cpu")
    rounds: int = 5
    warmup: int = 1
    official: Mapping[str, str] = field(default_factory=dict)

    def official_label(self, key: str, like: str, runs: bool = True) -> str:
        """The ``official`` entry of a result: ``"official code at PATH (commit)"`` when a checkout of
        ``key`` was given and the measure ``runs`` it, else ``"official-like variant: <like>"`` (noting
        a checkout given to a measure that cannot run it)."""
        path = self.official.get(key)
        if path and runs:
            return f"official code at {path} ({checkout_commit(path)})"
        note = f" (the checkout at {path} is not run by this measure)" if path else ""
        return f"official-like variant: {like}{note}"


def checkout_commit(path: str | os.PathLike[str]) -> str:
    """The git commit of a checkout (``"commit unknown"`` when it is not a git work tree)."""
    try:
        out = subprocess.run(["git", "-C", os.fspath(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return out.stdout.strip()[:12] if out.returncode == 0 and out.stdout.strip() else "commit unknown"


MeasureFn = Callable[[Mapping[str, Any], Context], Timed]
"""``fn(point, ctx)``: measure one sweep point (its keyword arguments) and return :class:`Timed`."""


@dataclass(frozen=True)
class Measure:
    """One speed measure.

    Attributes:
        name: the id on the command line.
        title: one line: what is timed.
        axis: the key of a point that grows along the sweep (``size``, ``masks``, ``batch``...).
        axis_label: the axis in words, with its unit (the PNG's x label).
        unit: what one call processes (``image``, ``step``, ``masks``).
        baseline: the variant the others' ratios are taken to (``None``: no ratios).
        points: per sweep size (:data:`SIZES`) the points, in growing order of ``axis``.
        fn: measures one point (:data:`MeasureFn`).
        official: key of :data:`OFFICIAL_REPOS` whose checkout the measure can run, if any.
    """

    name: str
    title: str
    axis: str
    axis_label: str
    unit: str
    baseline: str | None
    points: Mapping[str, Sequence[Mapping[str, Any]]]
    fn: MeasureFn
    official: str | None = None

    def sweep(self, size: str, values: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The points of sweep ``size``; ``values`` replace the axis values (each point is the size's
        last point with its axis set to one value)."""
        if size not in SIZES:
            raise ValueError(f"sweep size must be one of {', '.join(SIZES)}, got {size!r}")
        points = [dict(p) for p in self.points[size]]
        if values is None:
            return points
        return [{**points[-1], self.axis: v} for v in values]


MEASURES: dict[str, Measure] = {}
"""Measure name → record, in registration order (the order of a run and of the PNG's panels)."""


def register(measure: Measure) -> Measure:
    """Add ``measure`` to :data:`MEASURES`; a second measure of the same name is an error."""
    if measure.name in MEASURES:
        raise ValueError(f"speed measure {measure.name!r} is registered twice")
    missing = [s for s in SIZES if not measure.points.get(s)]
    if missing:
        raise ValueError(f"speed measure {measure.name!r} has no points for sweep size(s) {missing}")
    MEASURES[measure.name] = measure
    return measure


def list_measures() -> list[str]:
    """The registered measure names, in run order."""
    _load()
    return list(MEASURES)


def get_measures(names: Sequence[str] | None = None) -> list[Measure]:
    """The measures called ``names`` (all of them for ``None`` or empty), in the order given.

    Raises:
        ValueError: an unknown name; the message lists the valid ones and the closest match.
    """
    _load()
    if not names:
        return list(MEASURES.values())
    out = []
    for name in names:
        if name not in MEASURES:
            close = difflib.get_close_matches(name, list(MEASURES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown speed measure {name!r}; available: {', '.join(MEASURES)}{hint}")
        out.append(MEASURES[name])
    return out


def _load() -> None:
    from . import measures  # noqa: F401  (registers every measure on import)
