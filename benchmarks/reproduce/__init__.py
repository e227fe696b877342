"""``python -m benchmarks reproduce``: run a paper's table end to end and score it against the paper.

:func:`reproduce` resolves and checks every run of a :class:`~benchmarks.tables.schema.Table`
(:mod:`.resolve`), runs them in order with each run's inputs taken from the earlier runs' folders
and finished stages skipped (:mod:`.execute`), and writes ``DIR/TABLE/results.csv``, ``results.md``,
``results.png`` and ``manifest.json`` (:mod:`.results`). ``smoke=True`` does the same on the
synthetic dataset with tiny random models (:mod:`.smoke`); ``embedded=True`` on the synthetic world
with its pretrained foundations at sizes that separate the rows (:mod:`.embedded`).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from wsss_kit.errors import ConfigError

from .execute import ReproduceRunError, RunOutcome, execute_runs
from .resolve import (
    BENCHMARKS_DIR,
    ResolvedRun,
    check_data_root,
    resolve_table,
    validate_runs,
)
from .results import CSV_COLUMNS, Measured, write_results
from .smoke import smoke_config

if TYPE_CHECKING:
    from ..tables.schema import Table

__all__ = ["CSV_COLUMNS", "EMBEDDED_OUT", "Measured", "ReproduceRunError", "ResolvedRun", "RunOutcome", "format_results",
           "lookup_table", "reproduce", "smoke_config", "table_ids"]


EMBEDDED_OUT = BENCHMARKS_DIR / "results" / "embedded"
"""``--embedded``'s default ``DIR``: ``benchmarks/results/embedded/TABLE/results.*`` (committed) and
``benchmarks/results/embedded/runs/`` (the run folders, ignored by git)."""


def table_ids() -> list[str]:
    """The ids of every table the harness knows (:func:`benchmarks.tables.list_tables`), sorted."""
    from ..tables import list_tables

    return list_tables()


def lookup_table(table_id: str) -> "Table":
    """:func:`benchmarks.tables.get_table` as a ConfigError (listing the ids and the closest) for the CLI."""
    from ..tables import UnknownTableError, get_table

    try:
        return get_table(table_id)
    except UnknownTableError as exc:
        raise ConfigError(f"{exc.args[0]} (python -m benchmarks reproduce --list)") from None


def format_results(measured: list[Measured]) -> str:
    """The rows as a plain-text table for the terminal (paper, measured, delta)."""
    width = max([3] + [len(m.row.row) for m in measured])
    lines = [f"{'row':<{width}}  {'metric':<6}  {'paper':>6}  {'measured':>8}  {'delta':>6}",
             f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 8}  {'-' * 6}"]
    for m in measured:
        got = "-" if m.measured is None else f"{m.measured:g}"
        delta = "" if m.delta is None else f"{m.delta:+.1f}"
        paper = "-" if m.row.paper is None else f"{m.row.paper:g}"
        lines.append(f"{m.row.row:<{width}}  {m.row.metric:<6}  {paper:>6}  {got:>8}  {delta:>6}"
                     + (f"  ({m.reason})" if m.measured is None and m.reason else ""))
    return "\n".join(lines)


def reproduce(table: "Table | str", out: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None = None,
              weights_dir: str | os.PathLike[str] | None = None, smoke: bool = False, embedded: bool = False,
              echo: Callable[[str], None] = print) -> list[Measured]:
    """Run (or resume) ``table`` into ``out/<table id>/`` and score its rows; return them.

    Args:
        table: a :class:`~benchmarks.tables.schema.Table` or its id.
        out: the output folder ``DIR``; run folders go to ``DIR/runs/`` (shared between tables),
            the table's files to ``DIR/<table id>/``.
        data_root: the folder holding the datasets (relative ``root:`` keys are joined to it);
            required unless ``smoke``.
        weights_dir: ``WSSS_WEIGHTS_DIR`` for the runs (released weights by name).
        smoke: the synthetic dataset and tiny random models (see :mod:`benchmarks.reproduce.smoke`).
        embedded: the synthetic world with its pretrained foundations (see
            :mod:`benchmarks.reproduce.embedded`); excludes ``smoke``; the only way to run a table
            with ``embedded_only``.
        echo: where the one-line-per-run progress goes.

    Raises:
        ConfigError: an unknown table, a bad ``data_root``/``weights_dir``, or any problem of any
            run found before the first run starts (all listed together).
        ReproduceRunError: a run failed (naming it and its log); rerunning resumes.
    """
    table = lookup_table(table) if isinstance(table, str) else table
    if embedded:
        from .embedded import embedded_table

        table = embedded_table(table)
    root = check_data_root(data_root, smoke or embedded)
    out_dir = Path(out).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; expected a folder (created if missing)")
    old_weights = os.environ.get("WSSS_WEIGHTS_DIR")
    if weights_dir is not None:
        wdir = Path(weights_dir).expanduser()
        if not wdir.is_dir():
            raise ConfigError(f"--weights-dir {str(weights_dir)!r} is not a folder; expected the folder holding "
                              f"the released weights (wsss weights --list names them)")
        os.environ["WSSS_WEIGHTS_DIR"] = str(wdir.resolve())
    try:
        runs = resolve_table(table, out_dir, data_root=root, smoke=smoke, embedded=embedded)
        validate_runs(runs)
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        folder = out_dir / table.id
        outcomes = execute_runs(runs, folder / "logs", echo=echo)
        _link_runs(folder, runs)
        settings = {"out": str(out_dir), "data_root": None if root is None else str(root),
                    "weights_dir": os.environ.get("WSSS_WEIGHTS_DIR")}
        return write_results(folder, table, runs, outcomes, smoke=smoke, started=started,
                             wall_seconds=round(time.perf_counter() - start, 1), settings=settings,
                             embedded=embedded)
    finally:
        if weights_dir is not None:
            if old_weights is None:
                os.environ.pop("WSSS_WEIGHTS_DIR", None)
            else:
                os.environ["WSSS_WEIGHTS_DIR"] = old_weights


def _link_runs(folder: Path, runs: list[ResolvedRun]) -> None:
    """``DIR/TABLE/runs/<name>`` → the run's shared folder (relative links; skipped where links fail)."""
    links = folder / "runs"
    links.mkdir(parents=True, exist_ok=True)
    for rr in runs:
        link = links / rr.run.name
        target = os.path.relpath(rr.run_dir, links)
        try:
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
        except OSError:
            pass  # a file system without links: manifest.json names every run folder
