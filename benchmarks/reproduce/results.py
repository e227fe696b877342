"""A table's results: each row's measured value beside the paper's, as CSV, Markdown, a PNG and a manifest.

A row's measured value is read from its run's ``manifest.json`` (``stages`` record, ``Row.result`` a
dotted path such as ``pseudo_masks.eval.miou``), or measured from the run's masks when ``Row.result``
is a :class:`~benchmarks.tables.schema.RegionFraction` (:mod:`.region_fraction`). mIoU and IoU are fractions there and percent in
the results (one decimal, as the papers print them). Per-class IoUs come from the ``iou`` list
beside the value (background first), matched to the paper's classes by name.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from wsss_kit.atomic import write_text
from wsss_kit.config import get_path
from wsss_kit.errors import WSSSError

from ..tables.schema import RegionFraction
from .execute import RunOutcome
from .plot import Bars, plot_results
from .region_fraction import measure_region_fraction
from .resolve import ResolvedRun

if TYPE_CHECKING:
    from ..tables.schema import Claim, Row, Table

__all__ = ["CSV_COLUMNS", "EMBEDDED_NOTE", "PERCENT_METRICS", "Measured", "claim_verdicts", "measure_rows",
           "write_results"]

CSV_COLUMNS = ("table", "row", "metric", "paper", "measured", "delta", "dataset", "split", "train_split", "crf",
               "multiscale", "random_walk", "run", "config", "reason")
"""``results.csv``'s header."""

PERCENT_METRICS = frozenset({"miou", "iou", "accuracy", "precision", "recall", "fraction"})
"""Metrics the manifests hold as fractions and the papers print in percent."""

SMOKE_NOTE = ("SMOKE RUN: synthetic dataset, tiny random models, a few training steps; the measured values "
              "are meaningless (only the pipeline, its chaining and its files are checked).")
EMBEDDED_NOTE = ("EMBEDDED WORLD: every run on the synthetic world ({train} train / {eval} val images of {size} px) with "
                 "its shipped foundations (world ResNet-50, world DeiT, wsss-synthetic-clip) at the world's "
                 "sizes; the paper's numbers are VOC/COCO's, beside for reference only: compare rows with "
                 "each other, not with the paper. The world has no WideResNet-38: DeepLabV1-ResNet38 heads "
                 "run as a DeepLab head on the world ResNet, PSA's AffinityNet as a narrow WR38 from scratch "
                 "(docs/reproduce.md, --embedded).")


def embedded_note() -> str:
    """:data:`EMBEDDED_NOTE` with the world's sizes of this checkout."""
    from .embedded import EMBEDDED_EVAL_IMAGES, EMBEDDED_IMAGE_SIZE, EMBEDDED_TRAIN_IMAGES

    return EMBEDDED_NOTE.format(train=EMBEDDED_TRAIN_IMAGES, eval=EMBEDDED_EVAL_IMAGES, size=EMBEDDED_IMAGE_SIZE)


@dataclass
class Measured:
    """A row with its measured value (``None`` with ``reason`` when there is none)."""

    row: "Row"
    measured: float | None
    reason: str = ""
    config: str = ""
    per_class: dict[str, float] = field(default_factory=dict)

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.row.paper is None:
            return None
        return round(self.measured - self.row.paper, 1)


_MISSING = object()


def _scale(metric: str, value: float) -> float:
    return round(100.0 * value, 1) if metric.lower() in PERCENT_METRICS else round(value, 4)


def _class_names(rr: ResolvedRun) -> tuple[str, ...]:
    """Background plus the run's dataset classes (empty if the dataset cannot be opened)."""
    from wsss_kit.pipeline.context import RunContext

    try:
        return ("background",) + tuple(RunContext(rr.cfg, rr.run_dir).class_names)
    except Exception:  # noqa: BLE001 - per-class numbers are optional; the row's value is not affected
        return ()


def measure_rows(table: "Table", runs: Sequence[ResolvedRun]) -> list[Measured]:
    """Every row of ``table`` with the value its run recorded."""
    by_name = {rr.run.name: rr for rr in runs}
    names_cache: dict[str, tuple[str, ...]] = {}
    out = []
    for row in table.rows:
        if row.run is None:
            out.append(Measured(row, None, row.why_not or "the toolkit cannot produce this row"))
            continue
        rr = by_name[row.run]
        if isinstance(row.result, RegionFraction):
            out.append(_measure_region(row, rr))
            continue
        manifest = rr.run_dir / "manifest.json"
        if not manifest.exists():
            out.append(Measured(row, None, f"run {row.run} has no manifest.json", rr.run.config))
            continue
        stages = json.loads(manifest.read_text(encoding="utf-8")).get("stages", {})
        value = get_path(stages, row.result or "", _MISSING)
        found = value is not _MISSING
        if not found or not isinstance(value, (int, float)) or isinstance(value, bool):
            why = (f"{manifest}: stages.{row.result} is not recorded" if not found
                   else f"{manifest}: stages.{row.result} is {value!r} (no ground truth?)")
            out.append(Measured(row, None, why, rr.run.config))
            continue
        m = Measured(row, _scale(row.metric, float(value)), "", rr.run.config)
        parent = (row.result or "").rpartition(".")[0]
        ious = get_path(stages, f"{parent}.iou", None) if parent else None
        if row.per_class and isinstance(ious, list):
            names = names_cache.setdefault(rr.run.name, _class_names(rr))
            m.per_class = {c: round(100.0 * ious[names.index(c)], 1) for c in row.per_class
                           if c in names and names.index(c) < len(ious) and ious[names.index(c)] is not None}
        out.append(m)
    return out


def _measure_region(row: "Row", rr: ResolvedRun) -> Measured:
    assert isinstance(row.result, RegionFraction)
    try:
        value = measure_region_fraction(row.result, rr.cfg, rr.run_dir)
    except WSSSError as exc:
        return Measured(row, None, str(exc), rr.run.config)
    if value is None:
        return Measured(row, None, f"no image of class {row.result.label!r} has region {row.result.region!r}",
                        rr.run.config)
    return Measured(row, _scale(row.metric, value), "", rr.run.config)


def claim_verdicts(table: "Table", measured: Sequence[Measured]) -> list[tuple["Claim", str]]:
    """Each claim of ``table`` with ``"held"``, ``"did not hold"`` or ``"not measured"`` and the two values."""
    values = {m.row.row: m.measured for m in measured}
    out = []
    for claim in table.claims:
        hi, lo = values.get(claim.higher), values.get(claim.lower)
        if hi is None or lo is None:
            out.append((claim, "not measured"))
            continue
        verdict = "held" if hi - lo > claim.margin else "did not hold"
        out.append((claim, f"{verdict} ({claim.higher}: {hi:g}, {claim.lower}: {lo:g})"))
    return out


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _csv_text(table: "Table", measured: Sequence[Measured]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in measured:
        r = m.row
        writer.writerow([table.id, r.row, r.metric, _fmt(r.paper), _fmt(m.measured), _fmt(m.delta), r.dataset,
                         r.split, r.train_split, r.crf, r.multiscale, r.random_walk, r.run or "", m.config,
                         m.reason])
    return buf.getvalue()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(table: "Table", measured: Sequence[Measured], runs: Sequence[ResolvedRun],
              outcomes: Sequence[RunOutcome], smoke: bool, embedded: bool = False) -> str:
    yes = {True: "yes", False: ""}
    banner = [f"**{SMOKE_NOTE}**", ""] if smoke else [f"**{embedded_note()}**", ""] if embedded else []
    lines = banner + [f"# {table.title}", "", f"Paper: {table.paper}.", ""]
    lines += ["| row | metric | data | CRF | multi-scale | +RW | paper | measured | Δ | note |",
              "|---|---|---|---|---|---|---:|---:|---:|---|"]
    for m in measured:
        r = m.row
        note = m.reason or r.note
        data = f"{r.dataset} {r.split}"
        if embedded and r.dataset != "synthetic":  # the world's val split (test for a test row's head run); the
            world = "test" if r.split == "test" and r.run is not None else "val"  # row names the paper's
            data = f"synthetic {world} (paper: {data})"
        lines.append(f"| {_cell(r.row)} | {r.metric} | {data} | {yes[r.crf]} | {yes[r.multiscale]} | "
                     f"{yes[r.random_walk]} | {_fmt(r.paper) or '-'} | {_fmt(m.measured) or '-'} | "
                     f"{'' if m.delta is None else f'{m.delta:+.1f}'} | {_cell(note)} |")
    verdicts = claim_verdicts(table, measured)
    if verdicts:
        lines += ["", "## Claims", "", "| claim | verdict |", "|---|---|"]
        lines += [f"| {_cell(c.text)} | {_cell(v)} |" for c, v in verdicts]
    for m in measured:
        if m.row.per_class:
            lines += ["", f"## Per-class IoU: {m.row.row}", "", "| class | paper | measured |", "|---|---:|---:|"]
            lines += [f"| {c} | {v:g} | {_fmt(m.per_class.get(c)) or '-'} |" for c, v in m.row.per_class.items()]
    lines += ["", "## Runs", "", ("wall (s): this call; stages (s): the run's stages as its manifest records them "
                                  "(their compute time, also when this call resumed them)."), "",
              "| run | config | folder | this call | wall (s) | stages (s) | note |", "|---|---|---|---|---:|---:|---|"]
    notes = {r.run.name: (r.run.config, r.run.note) for r in runs}
    for o in outcomes:
        config, note = notes.get(o.name, ("", ""))
        stage_s = sum(float(v.get("wall_seconds") or 0.0) for v in _stage_times(o.run_dir).values())
        lines.append(f"| {o.name} | {config} | {o.run_dir.name} | {o.status} | {o.wall_seconds:.1f} | {stage_s:.1f} | "
                     f"{_cell(note)} |")
    return "\n".join(lines) + "\n"


def _panels(table: "Table", measured: Sequence[Measured]) -> list[Bars]:
    axis = ", ".join(sorted({m.row.metric for m in measured})) + " (%)"
    panels = [Bars(f"{table.id}: paper vs measured", axis, [m.row.row for m in measured],
                   [m.row.paper for m in measured], [m.measured for m in measured])]
    for m in measured:
        if m.row.per_class:
            classes = list(m.row.per_class)
            panels.append(Bars(f"per-class IoU: {m.row.row}", "IoU (%)", classes,
                               [m.row.per_class[c] for c in classes], [m.per_class.get(c) for c in classes]))
    return panels


def _stage_times(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    stages = json.loads(path.read_text(encoding="utf-8")).get("stages", {})
    return {s: {k: rec.get(k) for k in ("complete", "started", "finished", "wall_seconds") if k in rec}
            for s, rec in stages.items()}


def write_results(folder: Path, table: "Table", runs: Sequence[ResolvedRun], outcomes: Sequence[RunOutcome], *,
                  smoke: bool, started: str, wall_seconds: float, settings: Mapping[str, Any],
                  embedded: bool = False) -> list[Measured]:
    """Write ``results.csv``, ``results.md``, ``results.png`` and ``manifest.json`` into ``folder``
    (each atomically); return the measured rows."""
    from benchmarks.machine import machine_info
    from wsss_kit.provenance import collect_provenance

    measured = measure_rows(table, runs)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "results.csv", _csv_text(table, measured))
    write_text(folder / "results.md", _markdown(table, measured, runs, outcomes, smoke, embedded))
    mark = " [smoke]" if smoke else " [embedded world]" if embedded else ""
    note = ("SMOKE RUN: synthetic data, tiny random models; the measured values are meaningless" if smoke else
            "EMBEDDED WORLD: synthetic data, the world's pretrained foundations; paper values (VOC/COCO) for "
            "reference only" if embedded else "")
    plot_results(folder / "results.png", f"{table.title}{mark}", _panels(table, measured), note=note)
    by_name = {o.name: o for o in outcomes}
    manifest = {
        "table": table.id, "title": table.title, "paper": table.paper, "smoke": smoke, "embedded": embedded,
        **settings,
        "claims": [{"claim": c.text, "verdict": v} for c, v in claim_verdicts(table, measured)],
        "started": started, "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": wall_seconds,
        "provenance": collect_provenance(),
        "machine": machine_info(),
        "runs": [{"name": rr.run.name, "config": rr.run.config, "run_dir": str(rr.run_dir), "digest": rr.digest,
                  "argv": rr.argv, "status": by_name[rr.run.name].status if rr.run.name in by_name else None,
                  "wall_seconds_this_call": by_name[rr.run.name].wall_seconds if rr.run.name in by_name else None,
                  "stages": _stage_times(rr.run_dir), "resolved_config": rr.cfg} for rr in runs],
    }
    write_text(folder / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    return measured
