"""Everything a run can check before its first stage writes a file: the plan.

:func:`plan_run` checks, in one pass, and reports every problem together:

* the config against the run schema (unknown keys with did-you-mean, types, ranges);
* every plugin node a pending stage will build, by building it without running it (on PyTorch's
  ``meta`` device, so no memory is allocated for weights), which also locates the weight files it
  loads (a node with ``checkpoint:`` is built as the run builds it: its ``checkpoint_replaces``
  files are not needed, its checkpoint is); the datasets are built and their item names checked;
* the folders a stage will read (``seeds.source``, ``pseudo_masks.source``);
* the run directory (not a file, not under ``/proc`` or ``/dev``, writable when there is work);
* the run's manifest: a stage finished with other settings names the keys that changed and the
  ``--restart`` stage that accepts them; a stage folder with files but no manifest record (e.g. a
  ``--restart`` that could not delete it) is refused rather than resumed.

The result says, stage by stage, what the run will do (:meth:`Plan.describe` is ``--dry-run``'s output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from ..config import dump_config, get_path, is_node, parse_config
from ..errors import ConfigError, WSSSError
from .checkpoints import build_from_checkpoint
from .context import SPLITS, RunContext, Shard
from .items import name_problems
from .stage_logging import logging_problems
from .stage_table import (
    RUN_SCHEMA,
    STAGE_TABLE,
    STAGES,
    Stage,
    select_stages,
    stage_fingerprint,
    stage_settings,
    stages_from,
)

__all__ = ["Plan", "check_run_config", "plan_run", "schema_problems", "settings_diff"]

SYSTEM_DIRS = ("/proc", "/sys", "/dev")
"""A run directory under one of these is refused: they are not storage."""


def schema_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Every problem of ``cfg`` against the run schema (unknown keys, types, ranges, plugin types and keywords)."""
    if not isinstance(cfg, Mapping):
        return [f"the config must be a mapping; got {type(cfg).__name__}"]
    problems = [p for p in RUN_SCHEMA.check(cfg, "") if not _needless_training_section(cfg, p)]
    if cfg.get("data") is None:
        problems.append("data is required: {train: {type: datasets/...}, eval: {type: datasets/...}}")
    return problems + logging_problems(cfg)


_TRAINING_ONLY = {"cam": ("cam.train",), "head": ("head.train", "head.loss")}
"""Sections that only a network's training stage reads: not required when a checkpoint gives the network."""


def _needless_training_section(cfg: Mapping[str, Any], problem: str) -> bool:
    """Whether ``problem`` asks for a training section of a network whose node has a ``checkpoint``
    (its training stage is then skipped: nothing reads the section)."""
    for section, keys in _TRAINING_ONLY.items():
        node = cfg.get(section)
        model = node.get("model") if isinstance(node, Mapping) else None
        if isinstance(model, Mapping) and model.get("checkpoint") is not None:
            if any(problem.startswith(f"{key} is required") for key in keys):
                return True
    return False


def check_run_config(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Check ``cfg`` against the run schema; one ConfigError lists every problem."""
    _raise(schema_problems(cfg), source)


def _raise(problems: Sequence[str], source: str, what: str = "config") -> None:
    problems = list(dict.fromkeys(problems))  # two stages may find the same thing
    if not problems:
        return
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    lines = "\n".join(f"  - {p}" for p in problems)
    raise ConfigError(f"{source}: {len(problems)} problems in the {what}:\n{lines}")


@dataclasses.dataclass
class StageStep:
    """What a run will do with one stage."""

    stage: Stage
    action: str
    """``"complete"`` (skipped), ``"restart"`` (recomputed), ``"nothing to do"``, ``"run"`` or
    ``"resume"`` (started before with the same settings)."""
    reason: str = ""
    selected: bool = True
    """Whether the run computes it (``--stages``)."""
    error: str = ""
    """Why the stage cannot run in this config (found while asking whether it has anything to do)."""

    @property
    def pending(self) -> bool:
        """Whether this run computes the stage."""
        return self.selected and self.action in ("run", "resume", "restart")


@dataclasses.dataclass
class Plan:
    """A checked run: the context and each stage's step."""

    ctx: RunContext
    steps: list[StageStep]
    restart: str | None

    @property
    def pending(self) -> list[str]:
        """Stages that will compute something."""
        return [s.stage.name for s in self.steps if s.pending]

    def describe(self) -> str:
        """The plan as text: one line per stage, with the files it reads and writes."""
        width = max(len(s) for s in STAGES)
        lines = [f"run directory: {self.ctx.run_dir}"
                 + ("" if self.ctx.run_dir.exists() else " (does not exist yet)")]
        for step in self.steps:
            st = step.stage
            action = step.action if step.selected or step.action in ("complete", "nothing to do") else "not selected"
            line = f"  {st.name:<{width}}  {action:<13}"
            if step.pending:
                line += f" reads {', '.join(st.reads)}; writes {', '.join(f + '/' for f in st.folders)}"
            elif step.reason:
                line += f" {step.reason}"
            lines.append(line.rstrip())
        if not self.pending:
            lines.append("nothing to compute: every selected stage is complete or has nothing to do")
        return "\n".join(lines)


def plan_run(cfg: Mapping[str, Any], run_dir: str | Path | None = None, *, stages: Sequence[str] | None = None,
             restart: str | None = None, shard: Shard = Shard(), source: str = "config",
             build_plugins: bool = True) -> Plan:
    """Check a run completely before it starts and say what each stage will do.

    Raises:
        ConfigError: listing every problem found (nothing has been written).
    """
    wanted = select_stages(stages)
    again = set(stages_from(restart)) if restart is not None else set()
    schema = schema_problems(cfg)
    # A bad seed is in the schema's list already; the other checks go on so that one pass finds all.
    seed_ok = not any(p.startswith("seed ") for p in schema)
    ctx = RunContext(cfg if seed_ok else {**cfg, "seed": 0}, run_dir, shard=shard, source=source)
    ctx.fingerprints = {s: stage_fingerprint(cfg, s) for s in STAGES}
    problems = schema + _run_dir_problems(ctx.run_dir)
    if not schema:  # a typo is reported as a typo, not as a change of settings
        problems += _manifest_problems(ctx, wanted, again)
    if any(p.startswith("data") for p in schema):
        _raise(problems, source)
    problems += _dataset_problems(ctx)
    if problems and any(p.startswith("data.") for p in problems):
        _raise(problems, source)  # the steps below need the datasets

    steps = [_step(ctx, st, wanted, again) for st in STAGE_TABLE]
    problems += _order_problems(steps)
    pending = {s.stage.name for s in steps if s.pending}
    for step in steps:
        if step.pending:
            problems += _folder_problems(ctx, step)
            missing = [n for n in step.stage.needs
                       if all(get_path(cfg, alt, None) is None for alt in n.split("|"))]
            if step.error:  # the stage's own words (e.g. no cam section: give seeds.source) say more
                problems.append(step.error)
            elif missing:
                needed = " and ".join(m.replace("|", " or ") for m in missing)
                problems.append(f"stage {step.stage.name} needs {needed} "
                                f"in the config ({step.stage.summary})")
    problems += _source_problems(ctx, pending)
    if build_plugins:
        problems += _plugin_problems(ctx, pending, skip=schema)
    if pending and not problems:
        problems += _writable_problems(ctx.run_dir)
    _raise(problems, source, "run")
    return Plan(ctx, steps, restart)


def _step(ctx: RunContext, st: Stage, wanted: Sequence[str], again: set[str]) -> StageStep:
    selected = st.name in wanted
    if st.name in again:
        return StageStep(st, "restart", selected=selected)
    entry = ctx.manifest.info(st.name)
    if entry.get("complete"):
        return StageStep(st, "complete", selected=selected)
    if st.nothing_to_do is not None:
        try:
            skipped = st.nothing_to_do(ctx)
        except WSSSError as exc:  # e.g. no cam section and no seeds.source: what the stage would say
            return StageStep(st, "resume" if entry else "run", selected=selected, error=str(exc))
        except Exception:  # noqa: BLE001 - the stage itself reports it when it runs; the checks list what they can
            skipped = None
        if skipped is not None:
            return StageStep(st, "nothing to do", skipped.get("reason", ""), selected=selected)
    return StageStep(st, "resume" if entry else "run", selected=selected)


def _order_problems(steps: list[StageStep]) -> list[str]:
    """A pending stage whose upstream stages are neither complete, nor empty, nor pending too."""
    problems, ok = [], set()
    for step in steps:
        if step.pending:
            missing = [s for s in STAGES[: STAGES.index(step.stage.name)] if s not in ok]
            if missing:
                problems.append(f"stage {step.stage.name} needs {', '.join(missing)} first (run them, or run "
                                "without --stages)")
        if step.pending or step.action in ("complete", "nothing to do"):
            ok.add(step.stage.name)
    return problems


def _run_dir_problems(run_dir: Path) -> list[str]:
    path = Path(os.path.abspath(run_dir))
    if any(str(path) == d or str(path).startswith(d + "/") for d in SYSTEM_DIRS):
        return [f"run directory {run_dir} lies under {path.parts[1] and '/' + path.parts[1]}, which holds no "
                "files; choose a folder on disk with --out"]
    if path.exists() and not path.is_dir():
        return [f"run directory {run_dir} exists and is a file, not a folder; choose another path with --out"]
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return [f"run directory {run_dir} cannot be made: {parent} is a file, not a folder"]
    return []


def _writable_problems(run_dir: Path) -> list[str]:
    """The run directory (or its nearest existing parent) must take a new file: checked by making one."""
    path = Path(os.path.abspath(run_dir))
    parent = path
    while not parent.exists():
        parent = parent.parent
    try:
        import tempfile

        fd, name = tempfile.mkstemp(prefix=".wsss-write-check.", dir=parent)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return [f"run directory {run_dir} cannot be written ({parent}: {exc.strerror or exc}); choose another "
                "folder with --out, or make it writable"]
    return []


def settings_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``["cam.train.steps: 300 → 5", ...]``: the leaf keys whose values differ."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            path = f"{prefix}.{key}" if prefix else str(key)
            out += settings_diff(old.get(key, _ABSENT), new.get(key, _ABSENT), path)
        return out
    if old == new:
        return []
    return [f"{prefix}: {_short(old)} → {_short(new)}"]


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT = _Absent()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _manifest_problems(ctx: RunContext, wanted: Sequence[str], again: set[str]) -> list[str]:
    """Stages recorded with other settings: name the changed keys and the stage to restart from."""
    changed = []
    for name in STAGES:
        entry = ctx.manifest.info(name)
        if not entry or name in again or name not in wanted and not entry.get("complete"):
            continue
        if entry.get("fingerprint") != ctx.fingerprints[name]:
            changed.append((name, entry))
    if not changed:
        return []
    first, entry = changed[0]
    old = entry.get("settings")
    if old is None:
        old = _settings_from_resolved_config(ctx, first, entry.get("fingerprint"))
    new = stage_settings(ctx.cfg, first)
    if old is not None:
        diff = settings_diff(old, new)
        what = "; ".join(diff[:8]) + (f" (and {len(diff) - 8} more)" if len(diff) > 8 else "")
    else:
        what = f"settings recorded only as fingerprint {entry.get('fingerprint')}, now {ctx.fingerprints[first]}"
    state = "completed" if entry.get("complete") else "started"
    return [f"stage {first} in {ctx.run_dir} was {state} with other settings: {what}. To recompute it and the "
            f"stages after it with the new settings, rerun with --restart {first}; or write to another run "
            "directory with --out"]


def _settings_from_resolved_config(ctx: RunContext, stage: str, fp: Any) -> dict[str, Any] | None:
    """The stage's settings as recorded by an older run in ``config.resolved.yaml``, if it matches ``fp``."""
    path = ctx.path("config.resolved.yaml")
    try:
        old_cfg = parse_config(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, WSSSError):
        return None
    return stage_settings(old_cfg, stage) if stage_fingerprint(old_cfg, stage) == fp else None


def _dataset_problems(ctx: RunContext) -> list[str]:
    problems = []
    for split in SPLITS:
        try:
            ds = ctx.dataset(split)
        except WSSSError as exc:
            problems.append(str(exc))
            continue
        except (OSError, TypeError, ValueError) as exc:
            problems.append(f"data.{split}: cannot build the dataset: {type(exc).__name__}: {exc}")
            continue
        names = getattr(ds, "names", None)
        if names is not None:
            bad = name_problems(names)
            if bad:
                problems.append(f"data.{split}: item names become file names in the run directory, and "
                                f"{'; '.join(bad[:5])}" + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""))
    if not problems and tuple(ctx.dataset("eval").class_names) != tuple(ctx.reference.class_names):
        problems.append(f"data.eval's classes {list(ctx.dataset('eval').class_names)} differ from data.train's "
                        f"{list(ctx.reference.class_names)}")
    return problems


def _folder_problems(ctx: RunContext, step: StageStep) -> list[str]:
    """Files in a stage's folders that no manifest record accounts for would be resumed as if this
    run had made them (e.g. the old predictions after a ``--restart`` that could not delete them)."""
    if step.action != "run" or ctx.manifest.info(step.stage.name):
        return []
    problems = []
    for folder in step.stage.folders:
        path = ctx.path(folder)
        if path.is_dir() and any(True for _ in _files(path)):
            problems.append(f"{path} holds files that the run's manifest does not account for (left by a "
                            f"--restart that could not delete them, or copied in?); delete that folder, or "
                            f"rerun with --restart {step.stage.name}")
    return problems


def _files(folder: Path) -> Iterator[Path]:
    for root, _, files in os.walk(folder):
        for f in files:
            yield Path(root, f)


def _source_problems(ctx: RunContext, pending: set[str]) -> list[str]:
    from .sources import mask_sources

    problems = []
    for key, stage in (("seeds.source", "seeds"), ("pseudo_masks.source", "pseudo_masks")):
        if stage not in pending:
            continue
        try:
            sources = mask_sources(ctx, key)
        except WSSSError as exc:
            problems.append(str(exc))
            continue
        for split, folder in sorted(sources.items()):
            if not folder.is_dir():
                problems.append(f"{key} ({split}): folder {folder} does not exist")
    return problems


@contextlib.contextmanager
def _no_allocation() -> Iterator[None]:
    with torch.device("meta"), warnings.catch_warnings():
        # a checkpoint loaded into a meta model is read and checked, its values are not kept: expected here
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        yield


def _plugin_nodes(ctx: RunContext, pending: set[str]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(config key, node, extra keywords)`` of every plugin node a pending stage builds."""
    from .stages import refiner_extras

    nodes = []
    if pending & {"train_cam", "cams"} and is_node(ctx.get("cam.model", None)):
        nodes.append(("cam.model", dict(ctx.get("cam.model")), {"num_classes": ctx.num_classes}))
    refiner = ctx.get("refiner", None)
    if (pending & {"train_refiner", "pseudo_masks"} and is_node(refiner)
            and ctx.get("pseudo_masks.source", None) is None):
        node = dict(refiner)
        if node.get("bg_threshold") == "auto":
            node["bg_threshold"] = 0.5  # chosen by the CAM sweep at run time; any valid value checks the rest
        try:
            factory = ctx_factory(node)
            extra = refiner_extras(factory, ctx)
        except WSSSError:
            extra = {}
        nodes.append(("refiner", node, extra))
    if pending & {"train_head", "eval"}:
        if is_node(ctx.get("head.model", None)):
            nodes.append(("head.model", dict(ctx.get("head.model")), {"num_classes": ctx.num_classes + 1}))
        if is_node(ctx.get("head.loss", None)):
            nodes.append(("head.loss", dict(ctx.get("head.loss")), {}))
    return nodes


def ctx_factory(node: Mapping[str, Any]) -> Any:
    from ..config import split_type
    from ..registry import default_registry

    kind, name = split_type(node["type"], "node")
    return default_registry().get(kind, name)


def _plugin_problems(ctx: RunContext, pending: set[str], skip: Sequence[str] = ()) -> list[str]:
    """Build each node a pending stage needs without running it: keyword values (preset and
    parameter-set names, sizes), checkpoints and weight files are checked as the plugin checks them.
    Built on the meta device (nothing allocated); a plugin that cannot be built there is built for real."""
    problems = []
    for key, node, extra in _plugin_nodes(ctx, pending):
        if any(p.startswith(key) for p in skip):
            continue  # already reported by the schema
        try:
            try:
                with _no_allocation():
                    build_from_checkpoint(node, key, **extra)
            except WSSSError:
                raise
            except Exception:  # noqa: BLE001 - a plugin that computes at construction may not run on meta
                build_from_checkpoint(node, key, **extra)
        except WSSSError as exc:
            text = str(exc)
            problems.append(text if text.startswith(key) else f"{key} ({node.get('type')}): {text}")
        except Exception as exc:  # noqa: BLE001 - any failure to build is reported, with the plugin's words
            problems.append(f"{key} ({node.get('type')}): cannot be built: {type(exc).__name__}: {exc}")
    return problems


def print_plan(plan: Plan, cfg: Mapping[str, Any]) -> None:
    """``--dry-run``'s output: the resolved config, then the plan."""
    print("# resolved config")
    print(dump_config(cfg).rstrip())
    print()
    print("# plan")
    print(plan.describe())
