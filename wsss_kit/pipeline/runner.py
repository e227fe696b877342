"""Running a pipeline over a run directory, and the stage-wise report at the end."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..atomic import write_text
from ..errors import ConfigError
from ..provenance import write_provenance
from ..registry import did_you_mean
from .context import STAGES, RunContext, Shard
from .stages import STAGE_FUNCTIONS

STAGE_FOLDERS = {
    "train_cam": ("train_cam",),
    "cams": ("cams",),
    "seeds": ("seeds",),
    "pseudo_masks": ("pseudo_masks",),
    "train_head": ("train_head",),
    "eval": ("predictions", "pictures"),
}
"""Folders of the run directory each stage writes."""

TRAINING_STAGES = ("train_cam", "train_head")
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
    """
    ctx = RunContext(cfg, run_dir, shard=shard, source=source)
    wanted = select_stages(stages)
    if restart is not None:
        select_stages([restart])
        for stage in STAGES[STAGES.index(restart):]:
            ctx.manifest.reset(stage)
            for folder in STAGE_FOLDERS[stage]:
                shutil.rmtree(ctx.path(folder), ignore_errors=True)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    write_provenance(ctx.run_dir, cfg)
    for stage in wanted:
        fp = ctx.fingerprint(stage)
        if ctx.manifest.is_complete(stage, fp):
            print(f"[wsss] {stage}: complete, skipped")
            continue
        missing = [s for s in STAGES[: STAGES.index(stage)] if not ctx.manifest.info(s).get("complete")]
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
        ctx.manifest.mark_complete(stage, fp, wall_seconds=round(time.perf_counter() - start, 1), **info)
    if all(ctx.manifest.info(s).get("complete") for s in STAGES):
        write_report(ctx, pictures)
    return ctx.manifest.data["stages"]


def refiner_name(cfg: Mapping[str, Any]) -> str:
    """The refiner plugin's name in a config (``"dense_crf"`` for ``refiners/dense_crf``)."""
    return str((cfg.get("refiner") or {}).get("type", "")).split("/")[-1]


def stage_rows(stages: Mapping[str, Any], refiner: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(row title, {split: mIoU, ...}) for the report, from manifest stage records."""
    rows = []
    for stage, title in REPORT_ROWS:
        rec = stages.get(stage, {})
        if stage == "pseudo_masks" and refiner:
            title = f"pseudo masks ({refiner})"
        if stage == "seeds" and rec.get("bg_threshold") is not None:
            title = f"seeds (threshold {rec['bg_threshold']:.2f})"
        rows.append((title, {split: (rec.get(split) or {}) for split in ("train", "eval")}))
    return rows


def format_report(stages: Mapping[str, Any], refiner: str = "") -> str:
    """A stage-wise mIoU table (percent) with the CAM's best threshold."""
    lines = [f"| {'stage':<34} | {'train mIoU':>10} | {'held-out mIoU':>13} |",
             f"|{'-' * 36}|{'-' * 12}|{'-' * 15}|"]
    for title, splits in stage_rows(stages, refiner):
        cells = []
        for split in ("train", "eval"):
            rec = splits[split]
            miou = rec.get("miou")
            text = "-" if miou is None else f"{100 * miou:.1f}"
            if rec.get("best_threshold") is not None:
                text += f" @{rec['best_threshold']:.2f}"
            cells.append(text)
        lines.append(f"| {title:<34} | {cells[0]:>10} | {cells[1]:>13} |")
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
