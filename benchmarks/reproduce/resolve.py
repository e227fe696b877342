"""A table's runs resolved to configs and folders, and checked, before anything runs.

Each :class:`~benchmarks.tables.schema.Run` becomes a :class:`ResolvedRun`: its config loaded with
the run's overrides, reduced for ``--smoke`` (:func:`~benchmarks.reproduce.smoke.smoke_config`,
then ``Run.smoke``) or with its dataset roots joined to ``--data-root``, and its
:class:`~benchmarks.tables.schema.Input` keys set to folders of earlier runs.

Run folders are shared between tables: a run lives in ``DIR/runs/<name>-<digest>``, where the digest
is a hash of its resolved config (inputs included, and so, transitively, the configs of the runs it
reads), its stages and its command. Two tables with the same MCTformer run (same config, overrides,
data) therefore train it once; changing anything that reaches a run gives it a new folder instead
of an error about changed settings. ``DIR/TABLE/runs/<name>`` is a link to the table's run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from wsss_kit.config import apply_overrides, get_path, is_node, load_config
from wsss_kit.errors import ConfigError, WSSSError
from wsss_kit.pipeline.manifest import fingerprint
from wsss_kit.pipeline.stage_table import STAGE_TABLE
from wsss_kit.pipeline.validation import plan_run, schema_problems
from wsss_kit.weights import required_weights, resolve

from .smoke import smoke_config

if TYPE_CHECKING:  # benchmarks.tables is imported only where a table is looked up
    from ..tables.schema import Run, Table

__all__ = ["BENCHMARKS_DIR", "ResolvedRun", "check_data_root", "resolve_table", "stages_with_work", "validate_runs"]

BENCHMARKS_DIR = Path(__file__).resolve().parents[1]
"""``benchmarks/``: ``Run.config`` is relative to it."""


@dataclass
class ResolvedRun:
    """A run of a table, ready to run.

    Attributes:
        run: the table's record.
        cfg: the resolved config (overrides, smoke reduction, data roots, inputs, ``run_dir``).
        run_dir: the run's folder (shared between tables; see the module docstring).
        argv: for a command run, its argv with the placeholders filled in; ``None`` for ``wsss run``.
        digest: the hash that names ``run_dir``.
    """

    run: Run
    cfg: dict[str, Any]
    run_dir: Path
    argv: list[str] | None
    digest: str

    @property
    def stages(self) -> list[str]:
        """``Run.stages``, or every stage the config has what it needs for (a CAM-only config stops
        before ``train_head``, as ``Run.stages = None`` means)."""
        return list(self.run.stages) if self.run.stages is not None else stages_with_work(self.cfg)

    @property
    def config_file(self) -> Path:
        """Where a command run's resolved config is written (its ``{config}``)."""
        return self.run_dir / "config.reproduce.yaml"


def stages_with_work(cfg: Mapping[str, Any]) -> list[str]:
    """The stages whose required config keys (``Stage.needs``) ``cfg`` has."""
    return [st.name for st in STAGE_TABLE
            if all(any(get_path(cfg, alt, None) is not None for alt in need.split("|")) for need in st.needs)]


def check_data_root(data_root: str | os.PathLike[str] | None, smoke: bool) -> Path | None:
    """``--data-root`` as a path: required and an existing folder unless ``smoke`` (also true for
    ``--embedded``: both run on the synthetic dataset)."""
    if data_root is None:
        if smoke:
            return None
        raise ConfigError("--data-root is required: the folder that holds the datasets the configs name "
                          "(root: VOCdevkit, root: coco); or pass --smoke or --embedded for the synthetic dataset")
    path = Path(data_root).expanduser()
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise ConfigError(f"--data-root {str(data_root)!r} {what}; expected the folder that holds VOCdevkit/ "
                          f"(and coco/ for COCO tables)")
    return path.resolve()


def _rebase_roots(cfg: dict[str, Any], data_root: Path) -> dict[str, Any]:
    """Relative ``root`` keys of the dataset nodes under ``data`` joined to ``data_root``."""
    data = cfg.get("data")
    if not isinstance(data, Mapping):
        return cfg
    new = {}
    for split, node in data.items():
        if is_node(node) and isinstance(node.get("root"), str) and not Path(node["root"]).expanduser().is_absolute():
            node = {**node, "root": str(data_root / node["root"])}
        new[split] = node
    return {**cfg, "data": new}


def _set_key(cfg: dict[str, Any], key: str, value: str, where: str) -> dict[str, Any]:
    try:
        return apply_overrides(cfg, [f"{key}={json.dumps(value)}"])  # a JSON string is YAML
    except ConfigError as exc:
        raise ConfigError(f"{where}: input {key}: {exc}") from None


def _command_path(name: str) -> str:
    """A console script of this environment (beside the running Python) or on ``PATH``."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    return found if found is not None else name


def _fill(argv: Sequence[str], config: Path, run_dir: Path, dirs: Mapping[str, Path], where: str) -> list[str]:
    out = []
    for arg in argv:
        text = arg.replace("{config}", str(config)).replace("{run_dir}", str(run_dir))
        while "{run:" in text:
            start = text.index("{run:")
            end = text.find("}", start)
            name = text[start + 5:end] if end > 0 else text[start + 5:]
            if end < 0 or name not in dirs:
                known = ", ".join(dirs) or "none"
                raise ConfigError(f"{where}: command argument {arg!r} names run {name!r}, which is not an earlier "
                                  f"run of the table (earlier runs: {known})")
            text = text[:start] + str(dirs[name]) + text[end + 1:]
        out.append(text)
    if out:
        out[0] = _command_path(out[0])
    return out


def resolve_table(table: Table, out: Path, *, data_root: Path | None = None, smoke: bool = False,
                  embedded: bool = False) -> list[ResolvedRun]:
    """Every run of ``table`` resolved (see :class:`ResolvedRun`), in order.

    ``embedded``: each config reduced by :func:`~benchmarks.reproduce.embedded.embedded_config`; a
    run reading a released trained network gets the world run that trains it
    (:data:`~benchmarks.reproduce.embedded.EMBEDDED_RUNS`) inserted before it, once per table.

    Raises:
        ConfigError: two runs with one name, a config file that does not exist or does not load, an
            input or ``{run:NAME}`` naming a run that is not earlier in the table, a row naming an
            unknown run; with ``embedded``, a weight spec the world's mapping does not know.
    """
    from ..tables.schema import Input
    from .embedded import EMBEDDED_RUNS, embedded_argv, embedded_config, trained_weights

    resolved: list[ResolvedRun] = []
    dirs: dict[str, Path] = {}
    names = [r.name for r in table.runs]

    def add(run: Run) -> None:
        where = f"table {table.id}, run {run.name!r}"
        if run.name in dirs:
            raise ConfigError(f"{where}: two runs are named {run.name!r}; run names must be unique in a table")
        path = BENCHMARKS_DIR / run.config
        if not path.is_file():
            raise ConfigError(f"{where}: config {run.config!r} not found (expected {path})")
        cfg = load_config(path, run.overrides)
        command = run.smoke_command if smoke and run.smoke_command is not None else run.command
        if smoke:
            cfg = apply_overrides(smoke_config(cfg), run.smoke)
        elif embedded:
            trained = trained_weights(cfg)
            cfg = embedded_config(cfg, where)
            command, needs = embedded_argv(tuple(command), where)
            for name in [n for _, n in trained] + needs:
                if EMBEDDED_RUNS[name].run.name not in dirs:
                    add(EMBEDDED_RUNS[name].run)
            # a released trained network is read from the world run that trains it: an input like any other
            run = dataclasses.replace(run, inputs=tuple(run.inputs) + tuple(
                Input(key, EMBEDDED_RUNS[name].run.name, EMBEDDED_RUNS[name].path) for key, name in trained))
        elif data_root is not None:
            cfg = _rebase_roots(cfg, data_root)
        for inp in run.inputs:
            if inp.run not in dirs:
                later = " (it comes later: a run may read only the runs before it)" if inp.run in names else ""
                raise ConfigError(f"{where}: input {inp.key} reads run {inp.run!r}, which is not an earlier run "
                                  f"of the table{later}; earlier runs: {', '.join(dirs) or 'none'}")
            cfg = _set_key(cfg, inp.key, str(dirs[inp.run] / inp.path), where)
        cfg.pop("run_dir", None)
        digest = fingerprint({"config": cfg, "stages": run.stages, "command": list(command)})[:10]
        run_dir = (out / "runs" / f"{run.name}-{digest}").resolve()
        cfg["run_dir"] = str(run_dir)
        rr = ResolvedRun(run, cfg, run_dir, None, digest)
        if command:
            rr.argv = _fill(command, rr.config_file, run_dir, dirs, where)
        resolved.append(rr)
        dirs[run.name] = run_dir

    if smoke and embedded:
        raise ConfigError("--smoke and --embedded exclude each other: --smoke runs tiny random models, --embedded "
                          "the world's pretrained foundations; pass one")
    if table.embedded_only and not (embedded or smoke):
        raise ConfigError(f"table {table.id} runs only on the embedded world (its rows are the world's claims, "
                          f"with no VOC counterpart); pass --embedded (or --smoke to check its plumbing)")
    for run in table.runs:
        add(run)
    for row in table.rows:
        if row.run is not None and row.run not in dirs:
            raise ConfigError(f"table {table.id}, row {row.row!r}: run {row.run!r} is not a run of the table "
                              f"(runs: {', '.join(dirs)})")
    return resolved


def _inputs_exist(rr: ResolvedRun) -> bool:
    return all(Path(get_path(rr.cfg, inp.key, "")).exists() for inp in rr.run.inputs)


def _stage_keys(stages: Sequence[str]) -> tuple[str, ...]:
    """Config keys the ``stages`` read: their fingerprinted sections, schema keys and needs."""
    keys: set[str] = set()
    for stage in STAGE_TABLE:
        if stage.name in stages:
            keys.update(stage.sections, (key for key, _, _ in stage.schema))
            keys.update(k for need in stage.needs for k in need.split("|"))
    return tuple(sorted(keys))


def _missing_weights(rr: ResolvedRun) -> list[str]:
    """The weight files a run needs that are not here (released names, paths, uncached hub tags).

    For ``wsss run``: what :func:`~wsss_kit.weights.required_weights` finds under the keys its stages
    read, less the keys the table's chaining fills (earlier runs write those files). For a command:
    every ``released:`` spec in its argv."""
    if rr.argv is not None:
        problems = []
        for arg in rr.argv:
            if arg.startswith("released:"):
                try:
                    resolve(arg, purpose=f"{rr.argv[0]} {arg}")
                except WSSSError as exc:
                    problems.append(str(exc))
        return problems
    chained = {inp.key for inp in rr.run.inputs}
    read = _stage_keys(rr.stages)
    out = []
    for req in required_weights(rr.cfg):
        if req.key in chained or not any(req.key == k or req.key.startswith(k + ".") for k in read):
            continue
        if req.status in ("missing", "invalid", "not cached"):
            out.append(f"{req.key}: {req.detail or req.status + ' ' + req.location}")
    return out


def validate_runs(runs: Sequence[ResolvedRun]) -> None:
    """Check every run before the first one starts; one ConfigError lists every problem.

    Every config against the run schema; a command's program exists; every run's weight files
    (:func:`~wsss_kit.weights.required_weights` for the keys its stages read, ``released:`` names in a
    command), also of runs that come late in the chain; a ``wsss run`` whose inputs exist (the first
    runs, or every run when resuming) is planned completely
    (:func:`~wsss_kit.pipeline.validation.plan_run`: plugins built on the meta device, weight files,
    datasets, the run folder's manifest). A run whose inputs an earlier run has yet to write is
    planned in full when its turn comes.
    """
    problems: list[str] = []
    for rr in runs:
        where = f"run {rr.run.name!r} ({rr.run.config})"
        found = schema_problems(rr.cfg)
        problems += [f"{where}: {p}" for p in found]
        if not found:
            try:
                problems += [f"{where}: {p}" for p in _missing_weights(rr)]
            except WSSSError as exc:
                problems.append(f"{where}: {exc}")
        if rr.argv is not None:
            if shutil.which(rr.argv[0]) is None and not Path(rr.argv[0]).exists():
                problems.append(f"{where}: command {rr.argv[0]!r} not found (neither beside {sys.executable} "
                                f"nor on PATH)")
        elif not found and _inputs_exist(rr):
            try:
                plan_run(rr.cfg, rr.run_dir, stages=rr.stages, source=where)
            except WSSSError as exc:
                problems.append(str(exc))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems; nothing has run:\n" + "\n".join(f"  - {p}" for p in problems))
