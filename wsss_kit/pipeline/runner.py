"""Running a pipeline over a run directory, and the stage-wise report at the end."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..atomic import remove_stale_temps, write_text
from ..engine.distributed import barrier, get_world_size, is_main_process
from ..engine.threads import apply_threads, plan_from_config
from ..errors import ConfigError, CorruptArtifactError
from ..provenance import write_provenance
from .context import RunContext, Shard
from .distributed import join_process_group
from .stage_table import STAGE_TABLE, STAGES, get_stage, producing_stage, select_stages, stage_settings, stages_from
from .validation import plan_run, print_plan

__all__ = ["format_report", "refiner_name", "report_rows", "run_pipeline", "select_stages", "stage_rows",
           "write_report"]


def run_pipeline(cfg: Mapping[str, Any], run_dir: str | Path | None = None, *,
                 stages: Sequence[str] | None = None, restart: str | None = None,
                 shard: Shard = Shard(), source: str = "config", pictures: int | None = None,
                 dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) the stages of ``cfg`` in ``run_dir``; return the manifest's stage records.

    The whole run is checked first (:func:`~wsss_kit.pipeline.validation.plan_run`: the config's
    keys, types and ranges, every plugin node a pending stage builds, weight files and brought-in
    folders, the run directory, the manifest), and every problem is reported before anything is
    written. ``dry_run`` prints the resolved config and the plan and stops there.

    ``restart`` recomputes that stage and everything after it: their manifest entries and output
    folders are deleted first (an error if they cannot be).

    A damaged file of the run directory found while reading it (e.g. a truncated CAM archive) is
    removed and recomputed by the stage that writes it, once per file.

    Under ``torchrun`` every process calls this with the same arguments: training stages use DDP,
    inference stages split their items by rank, and only rank 0 writes the shared files
    (:mod:`wsss_kit.pipeline.distributed`).
    """
    plan = plan_run(cfg, run_dir, stages=stages, restart=restart, shard=shard, source=source)
    if dry_run:
        print_plan(plan, cfg)
        return dict(plan.ctx.manifest.data["stages"])
    ctx = plan.ctx
    # before any model, loader or CRF pool starts: this process's share of the cores (wsss_kit.engine.threads)
    apply_threads(plan_from_config(ctx.get("threads", None)))
    join_process_group(ctx, plan.pending)  # no-op outside torchrun
    if restart is not None:
        _restart(ctx, restart)
    if plan.pending:
        _prepare_run_dir(ctx, cfg)
    barrier()
    wanted = select_stages(stages)
    ran = _run_recovering(ctx, wanted, shard)
    if ran is None:
        return ctx.manifest.data["stages"]
    complete = all(ctx.manifest.info(s).get("complete") for s in STAGES)
    if is_main_process() and complete and (ran or not ctx.path("results.md").exists()):
        write_report(ctx, pictures)
    return ctx.manifest.data["stages"]


def _restart(ctx: RunContext, restart: str) -> None:
    """Forget ``restart`` and the stages after it, then delete their folders (rank 0; the others
    wait). The manifest entries go first: a folder that cannot be deleted is then refused by the
    next run's plan instead of being resumed as if it were new."""
    again = stages_from(restart)
    for stage in again:
        ctx.manifest.reset(stage)
    if not is_main_process():
        return
    for name in ("results.md", "results.json"):
        try:
            ctx.path(name).unlink(missing_ok=True)  # the old report no longer describes the run
        except OSError as exc:
            raise ConfigError(f"--restart {restart}: cannot delete {ctx.path(name)} ({exc})") from None
    for stage in again:
        for folder in get_stage(stage).folders:
            path = ctx.path(folder)
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
            except OSError as exc:
                raise ConfigError(f"--restart {restart}: cannot delete {path} ({exc.strerror or exc}), so its old "
                                  f"files would be mixed with the new ones; delete it yourself and rerun") from None


def _prepare_run_dir(ctx: RunContext, cfg: Mapping[str, Any]) -> None:
    if not is_main_process():
        return
    try:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        for name in remove_stale_temps(ctx.run_dir):
            print(f"[wsss] removed {name}, left by an interrupted write")
        write_provenance(ctx.run_dir, cfg)
    except OSError as exc:
        raise ConfigError(f"run directory {ctx.run_dir} cannot be written: {exc}") from None


def _run_recovering(ctx: RunContext, wanted: list[str], shard: Shard) -> bool | None:
    """:func:`_run_stages`, recomputing damaged files of the run directory (once each)."""
    retried: set[Path] = set()
    while True:
        try:
            return _run_stages(ctx, wanted, shard)
        except CorruptArtifactError as exc:
            path = Path(str(exc.path)) if exc.path else None
            producer = producing_stage(ctx.run_dir, path) if path is not None else None
            if path is None or producer is None or path in retried or get_world_size() > 1 or not path.exists():
                raise
            retried.add(path)
            print(f"[wsss] {path} is damaged ({exc}); deleting it and recomputing it (stage {producer})")
            path.unlink()
            ctx.manifest.reset(producer)


def _run_stages(ctx: RunContext, wanted: list[str], shard: Shard) -> bool | None:
    """Run the ``wanted`` stages in order; ``True`` if any computed something, ``None`` when this
    process stops early (other shards pending, or a training stage left to shard 0)."""
    ran = False
    for stage in wanted:
        fp = ctx.fingerprints[stage]
        if ctx.manifest.is_complete(stage, fp):
            print(f"[wsss] {stage}: complete, skipped")
            continue
        missing = [s for s in STAGES[: STAGES.index(stage)] if not ctx.manifest.info(s).get("complete")]
        missing = [s for s in missing if not _complete_if_nothing_to_do(ctx, s)]
        if missing:
            raise ConfigError(f"stage {stage!r} needs {', '.join(missing)} first (run them, or run without --stages)")
        record = get_stage(stage)
        if record.trains and shard.rank != 0:
            print(f"[wsss] {stage}: trained by shard 0 only; rerun shard {shard.rank}/{shard.count} "
                  "once it is complete")
            return None
        settings = _json_safe(stage_settings(ctx.cfg, stage))
        ctx.manifest.mark_started(stage, fp, settings=settings)
        start = time.perf_counter()
        print(f"[wsss] {stage}: running", flush=True)  # before the stage's first progress, also in a log file
        info = record.run(ctx)
        ran = True
        if info is None:
            print(f"[wsss] {stage}: shard {shard.rank}/{shard.count} done; waiting for the other shards")
            return None
        if info.get("skipped"):
            print(f"[wsss] {stage}: nothing to do ({info.get('reason', 'skipped')})")
        ctx.manifest.mark_complete(stage, fp, wall_seconds=round(time.perf_counter() - start, 1),
                                   settings=settings, **info)
    return ran


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _complete_if_nothing_to_do(ctx: RunContext, stage: str) -> bool:
    """Record ``stage`` as complete (skipped) when it has nothing to do in this config, e.g.
    ``train_refiner`` for a refiner that does not learn; return whether it is complete now."""
    check = get_stage(stage).nothing_to_do
    info = check(ctx) if check is not None else None
    if info is None:
        return False
    fp = ctx.fingerprints[stage]
    if ctx.manifest.info(stage) and ctx.manifest.info(stage).get("fingerprint") != fp:
        return False  # started with other settings: the stage's own check reports it
    ctx.manifest.mark_complete(stage, fp, wall_seconds=0.0, settings=_json_safe(stage_settings(ctx.cfg, stage)),
                               **info)
    print(f"[wsss] {stage}: nothing to do ({info.get('reason', 'skipped')})")
    return True


def refiner_name(cfg: Mapping[str, Any]) -> str:
    """The refiner plugin's name in a config (``"dense_crf"`` for ``refiners/dense_crf``)."""
    return str((cfg.get("refiner") or {}).get("type", "")).split("/")[-1]


def stage_rows(stages: Mapping[str, Any], refiner: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(row title, {split: mIoU, ...}) for the report, from manifest stage records."""
    rows = []
    for stage, title in ((s.name, s.report_row) for s in STAGE_TABLE if s.report_row):
        rec = stages.get(stage, {})
        if stage == "cams" and rec.get("skipped"):
            title = "CAM (not computed)"
        if stage == "pseudo_masks" and rec.get("source"):
            title = "pseudo masks (pseudo_masks.source)"
        elif stage == "pseudo_masks" and refiner:
            trained = stages.get("train_refiner", {})
            steps = f", trained {trained['steps']} steps" if trained.get("steps") and not trained.get("skipped") else ""
            title = f"pseudo masks ({refiner}{steps})"
        if stage == "seeds" and rec.get("bg_threshold") is not None:
            title = f"seeds (threshold {rec['bg_threshold']:.2f})"
        elif stage == "seeds" and rec.get("source"):
            title = "seeds (seeds.source)"
        rows.append((title, {split: (rec.get(split) or {}) for split in ("train", "eval")}))
    return rows


def report_rows(stages: Mapping[str, Any], refiner: str = "") -> list[tuple[str, str, dict[str, Any]]]:
    """:func:`stage_rows` with each row's stage name first: ``(stage, row title, {split: scores})``."""
    reported = [s.name for s in STAGE_TABLE if s.report_row]
    return [(stage, title, splits) for stage, (title, splits) in zip(reported, stage_rows(stages, refiner))]


def format_report(stages: Mapping[str, Any], refiner: str = "") -> str:
    """A stage-wise mIoU table (percent) with the CAM's best threshold."""
    rows = stage_rows(stages, refiner)
    width = max([34] + [len(title) for title, _ in rows])
    lines = [f"| {'stage':<{width}} | {'train mIoU':>10} | {'held-out mIoU':>13} |",
             f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 15}|"]
    for title, splits in rows:
        cells = []
        for split in ("train", "eval"):
            rec = splits[split]
            miou = rec.get("miou")
            text = "-" if miou is None else f"{100 * miou:.1f}"
            if rec.get("best_threshold") is not None:
                text += f" @{rec['best_threshold']:.2f}"
            cells.append(text)
        lines.append(f"| {title:<{width}} | {cells[0]:>10} | {cells[1]:>13} |")
    return "\n".join(lines)


def write_report(ctx: RunContext, pictures: int | None = None) -> str:
    """Write ``results.md``/``results.json`` and the pictures (both splits' grids, the per-class IoU
    charts); return the table text. ``results.md`` says why a cell of the table is empty."""
    from ..metrics import format_iou_table
    from .pictures import write_run_pictures
    from .report_notes import empty_cell_notes

    stages = ctx.manifest.data["stages"]
    refiner = refiner_name(ctx.cfg)
    table = format_report(stages, refiner)
    class_names = ("background",) + ctx.class_names
    rows = report_rows(stages, refiner)
    per_class = {title: splits["eval"]["iou"] for _, title, splits in rows if splits["eval"].get("iou")}
    text = "# Results\n\n" + table + "\n"
    notes = empty_cell_notes(stages, [(stage, title) for stage, title, _ in rows])
    if notes:
        text += "\nEmpty cells (-):\n\n" + "\n".join(notes) + "\n"
    if per_class:
        text += ("\n## Per-class IoU (held-out split)\n\n"
                 + format_iou_table(per_class, class_names, fmt="markdown") + "\n")
    n = int(pictures if pictures is not None else (ctx.get("eval", {}) or {}).get("pictures", 6))
    written = write_run_pictures(ctx, n, rows)
    curves = [f"{s.name}/loss_curves.png" for s in STAGE_TABLE
              if s.trains and ctx.path(s.name, "loss_curves.png").is_file()]
    listed = [Path(os.path.relpath(p, ctx.run_dir)).as_posix() for p in written] + curves
    if listed:
        text += "\n## Pictures\n\n" + "\n".join(f"- `{p}`" for p in listed) + "\n"
    write_text(ctx.path("results.md"), text)
    write_text(ctx.path("results.json"), json.dumps(stages, indent=2, sort_keys=True) + "\n")
    return table
