"""Running a pipeline over a run directory, and the stage-wise report at the end."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..atomic import write_text
from ..engine.distributed import barrier, is_main_process
from ..errors import ConfigError
from ..provenance import write_provenance
from ..registry import did_you_mean
from .context import STAGES, RunContext, Shard
from .distributed import join_process_group
from .stages import NOTHING_TO_DO, STAGE_FUNCTIONS

STAGE_FOLDERS = {
    "train_cam": ("train_cam",),
    "cams": ("cams",),
    "seeds": ("seeds",),
    "train_refiner": ("train_refiner",),
    "pseudo_masks": ("pseudo_masks",),
    "train_head": ("train_head",),
    "eval": ("predictions", "pictures"),
}
"""Folders of the run directory each stage writes."""

TRAINING_STAGES = ("train_cam", "train_refiner", "train_head")
"""Stages that are not split across shards: with ``--shard i/n`` only shard 0 runs them."""

REPORT_ROWS = (
    ("cams", "CAM (best threshold)"),
    ("seeds", "seeds"),
    ("pseudo_masks", "pseudo masks"),
    ("eval", "retrained head"),
)


def select_stages(names: Iterable[str] | None) -> list[str]:
    """Validate stage names (``None`` → all), keeping pipeline order."""
    if names is None:
        return list(STAGES)
    names = list(names)
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r}{did_you_mean(name, STAGES)}; stages: {', '.join(STAGES)}")
    return [s for s in STAGES if s in names]


def run_pipeline(cfg: Mapping[str, Any], run_dir: str | Path | None = None, *,
                 stages: Sequence[str] | None = None, restart: str | None = None,
                 shard: Shard = Shard(), source: str = "config", pictures: int | None = None) -> dict[str, Any]:
    """Run (or resume) the stages of ``cfg`` in ``run_dir``; return the manifest's stage records.

    ``restart`` recomputes that stage and everything after it: their manifest entries and output
    folders are deleted first.

    Under ``torchrun`` every process calls this with the same arguments: training stages use DDP,
    inference stages split their items by rank, and only rank 0 writes the shared files
    (:mod:`wsss_kit.pipeline.distributed`).
    """
    ctx = RunContext(cfg, run_dir, shard=shard, source=source)
    wanted = select_stages(stages)
    join_process_group(ctx, wanted, restart)  # no-op outside torchrun
    if restart is not None:
        select_stages([restart])
        for stage in STAGES[STAGES.index(restart):]:
            ctx.manifest.reset(stage)
            for folder in STAGE_FOLDERS[stage]:
                if is_main_process():  # under torchrun rank 0 deletes; the others wait below
                    shutil.rmtree(ctx.path(folder), ignore_errors=True)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        write_provenance(ctx.run_dir, cfg)
    barrier()
    for stage in wanted:
        fp = ctx.fingerprint(stage)
        if ctx.manifest.is_complete(stage, fp):
            print(f"[wsss] {stage}: complete, skipped")
            continue
        missing = [s for s in STAGES[: STAGES.index(stage)] if not ctx.manifest.info(s).get("complete")]
        missing = [s for s in missing if not _complete_if_nothing_to_do(ctx, s)]
        if missing:
            raise ConfigError(f"stage {stage!r} needs {', '.join(missing)} first (run them, or run without --stages)")
        if stage in TRAINING_STAGES and shard.rank != 0:
            print(f"[wsss] {stage}: trained by shard 0 only; rerun shard {shard.rank}/{shard.count} "
                  "once it is complete")
            return ctx.manifest.data["stages"]
        ctx.manifest.mark_started(stage, fp)
        start = time.perf_counter()
        print(f"[wsss] {stage}: running")
        info = STAGE_FUNCTIONS[stage](ctx)
        if info is None:
            print(f"[wsss] {stage}: shard {shard.rank}/{shard.count} done; waiting for the other shards")
            return ctx.manifest.data["stages"]
        if info.get("skipped"):
            print(f"[wsss] {stage}: nothing to do ({info.get('reason', 'skipped')})")
        ctx.manifest.mark_complete(stage, fp, wall_seconds=round(time.perf_counter() - start, 1), **info)
    if is_main_process() and all(ctx.manifest.info(s).get("complete") for s in STAGES):
        write_report(ctx, pictures)
    return ctx.manifest.data["stages"]


def _complete_if_nothing_to_do(ctx: RunContext, stage: str) -> bool:
    """Record ``stage`` as complete (skipped) when it has nothing to do in this config, e.g.
    ``train_refiner`` for a refiner that does not learn; return whether it is complete now."""
    check = NOTHING_TO_DO.get(stage)
    info = check(ctx) if check is not None else None
    if info is None:
        return False
    fp = ctx.fingerprint(stage)
    if ctx.manifest.info(stage) and ctx.manifest.info(stage).get("fingerprint") != fp:
        return False  # started with other settings: the stage's own check reports it
    ctx.manifest.mark_complete(stage, fp, wall_seconds=0.0, **info)
    print(f"[wsss] {stage}: nothing to do ({info.get('reason', 'skipped')})")
    return True


def refiner_name(cfg: Mapping[str, Any]) -> str:
    """The refiner plugin's name in a config (``"dense_crf"`` for ``refiners/dense_crf``)."""
    return str((cfg.get("refiner") or {}).get("type", "")).split("/")[-1]


def stage_rows(stages: Mapping[str, Any], refiner: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(row title, {split: mIoU, ...}) for the report, from manifest stage records."""
    rows = []
    for stage, title in REPORT_ROWS:
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
    """Write ``results.md``/``results.json`` and the picture grids; return the table text."""
    from ..metrics import format_iou_table
    from .pictures import write_pictures

    stages = ctx.manifest.data["stages"]
    refiner = refiner_name(ctx.cfg)
    table = format_report(stages, refiner)
    class_names = ("background",) + ctx.class_names
    per_class = {title: splits["eval"]["iou"] for title, splits in stage_rows(stages, refiner)
                 if splits["eval"].get("iou")}
    text = "# Results\n\n" + table + "\n"
    if per_class:
        text += "\n## Per-class IoU (held-out split)\n\n" + format_iou_table(per_class, class_names, fmt="markdown") + "\n"
    write_text(ctx.path("results.md"), text)
    write_text(ctx.path("results.json"), json.dumps(stages, indent=2, sort_keys=True) + "\n")
    n = int(pictures if pictures is not None else (ctx.get("eval", {}) or {}).get("pictures", 6))
    if n > 0:
        write_pictures(ctx, n)
    return table
