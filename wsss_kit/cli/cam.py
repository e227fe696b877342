"""``wsss cam CONFIG``: CAM files and seed masks of one split from a CAM network, without a pipeline.

Reads a run config (``data.<split>``, ``cam.model``, ``cam.infer``, ``seeds.bg_threshold``,
``run_dir``, ``device``, ``seed``) and writes ``<out>/cams/<split>/<name>.npz`` and
``<out>/seeds/<split>/<name>.png`` for this process's shard, skipping existing files. The loop is
:func:`wsss_kit.pipeline.cam_export.export_cams`, the one the pipeline's ``cams`` stage runs.
Under ``torchrun`` the items are split over the processes too (rank ``r`` of ``N`` within
``--shard i/n`` handles ``i + n * r, i + n * (r + N), ...``), the processes meet before the split
is scored, the scores are summed over them, and rank 0 writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import load_config
from ..engine.distributed import any_rank, barrier, init_distributed, is_main_process
from ..errors import ConfigError
from ..interfaces import WSSSDataset
from ..pipeline.cam_export import ExportCounts, export_cams, record_settings, weights_digest
from ..pipeline.context import RunContext, Shard
from ..pipeline.distributed import process_shard
from ..pipeline.evaluation import has_ground_truth, score_mask_files, sweep_cam_files
from ..pipeline.items import all_exist, item_names
from ..pipeline.stages import cam_infer_settings, parse_bg_threshold, trained_cam_model
from ..pipeline.validation import schema_problems
from ..weights import resolve_checkpoint


def threshold_setting(args: argparse.Namespace, ctx: RunContext | None) -> float | str:
    """``--bg-threshold``, else ``seeds.bg_threshold`` (default ``auto``): a number or ``"auto"``."""
    if args.bg_threshold is not None:
        return parse_bg_threshold(args.bg_threshold, "--bg-threshold")
    assert ctx is not None
    return parse_bg_threshold(ctx.get("seeds.bg_threshold", "auto"), "seeds.bg_threshold")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def cam(args: argparse.Namespace) -> int:
    """Compute the CAMs and seeds of one split for this shard; score them once the split is done."""
    cfg = load_config(args.config, args.overrides)
    # The run schema, less what only training needs: `wsss cam` reads data, cam.model, cam.infer and seeds.
    problems = [p for p in schema_problems(cfg) if not p.startswith("cam.train is required")]
    if problems:
        raise ConfigError(f"{args.config}: " + "; ".join(problems))
    if args.bg_threshold is not None and args.bg_threshold != "auto":
        threshold_setting(args, None)  # refused before any file is written
    if args.checkpoint is not None:
        resolve_checkpoint(args.checkpoint, purpose="--checkpoint")  # a hub tag or a missing file: refused now
    run_dir = Path(cfg.get("run_dir") or "runs/default")
    out = Path(args.out) if args.out else run_dir
    shard = Shard.parse(args.shard)
    ctx = RunContext(cfg, out, shard=shard, source=args.config)
    init_distributed(ctx.device)  # under torchrun: join the process group and split the items by rank too
    shard = ctx.shard = process_shard(shard)
    split, where = args.split, f"data.{args.split}"
    scales, flip, batch_size = cam_infer_settings(ctx)
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
        batch_size = args.batch_size
    threshold = None if args.no_seeds else threshold_setting(args, ctx)
    ds = ctx.dataset(split)
    if threshold == "auto" and not has_ground_truth(ds):
        raise ConfigError(f"bg_threshold 'auto' picks the best threshold against ground-truth masks, and {where} "
                          "has none; pass a number, e.g. --bg-threshold 0.25 (or --no-seeds)")
    names = item_names(ds)
    mine = list(shard.indices(len(ds)))
    cam_dir, seed_dir = out / "cams" / split, out / "seeds" / split
    print(f"wsss cam: {where}: {ds.describe()}; shard {shard.rank}/{shard.count}: {len(mine)} images")

    model = None
    if any(not (cam_dir / f"{names[i]}.npz").exists() for i in mine):
        model, used = trained_cam_model(ctx, args.checkpoint, run_dir, ds.num_classes, untrained_ok=True)
        used = f"--checkpoint {args.checkpoint}" if args.checkpoint is not None else used
        print(f"weights: {used}")
        record_settings(cam_dir, {"model": f"{type(model).__module__}.{type(model).__qualname__}",
                                  "weights_sha256": weights_digest(model), "scales": list(scales),
                                  "flip": flip}, "CAM files")
    else:
        print("weights: not needed (every CAM file of this shard exists)")
    common: dict[str, Any] = dict(scales=scales, flip=flip, batch_size=batch_size, palette=ds.palette,
                                  device=ctx.device, compress=args.compress, where=where)
    fixed = threshold if isinstance(threshold, float) else None
    if fixed is not None:
        record_settings(seed_dir, {"bg_threshold": fixed}, "seeds")
    counts = export_cams(model, ds, mine, cam_dir, seed_dir=seed_dir if fixed is not None else None,
                         threshold=fixed, desc=f"CAMs [{split}]", **common)
    barrier()  # under torchrun every process has written its CAM files before any looks for them all
    cams_done = all_exist(cam_dir, names, ".npz")
    cam_score = None
    if threshold == "auto":
        if not cams_done:
            print(f"seeds: bg_threshold 'auto' needs every CAM file of {where}, and other shards' are still "
                  f"missing; rerun once they are done (or pass --bg-threshold)")
            _report(counts, shard, cam_dir, None)
            return 0
        cam_score = sweep_cam_files(ds, cam_dir, ds.num_classes, desc=f"score CAMs [{split}]", across_ranks=True)
        fixed = float(cam_score["best_threshold"])
        print(f"bg threshold: {fixed:.2f} (auto: the best of the CAM sweep on {where})")
        record_settings(seed_dir, {"bg_threshold": fixed}, "seeds")
        seeded = export_cams(None, ds, mine, cam_dir, seed_dir=seed_dir, threshold=fixed,
                             desc=f"seeds [{split}]", **common)
        counts = ExportCounts(computed=counts.computed, seeded=seeded.seeded, skipped=seeded.skipped)
    _report(counts, shard, cam_dir, seed_dir if fixed is not None else None)

    barrier()  # and its seeds
    seeds_done = fixed is None or all_exist(seed_dir, names, ".png")
    if not (cams_done and seeds_done):
        have = sum((cam_dir / f"{n}.npz").exists() for n in names)
        seeds = "" if fixed is None else f", {sum((seed_dir / f'{n}.png').exists() for n in names)} seeds"
        print(f"other shards pending: {have} of {len(names)} CAM files{seeds} exist; the split is scored "
              "when all are done")
        return 0
    summary = _summary(ds, where, cam_dir, seed_dir if fixed is not None else None, fixed, cam_score,
                       fresh=any_rank(counts.computed + counts.seeded > 0))
    _print_summary(summary, where)
    print(f"summary: {cam_dir / 'summary.json'}")
    return 0


def _report(counts: ExportCounts, shard: Shard, cam_dir: Path, seed_dir: Path | None) -> None:
    print(f"shard {shard.rank}/{shard.count}: {counts.computed} CAMs computed, {counts.seeded} seeds made from "
          f"existing CAM files, {counts.skipped} already complete")
    print(f"CAMs: {cam_dir}" + (f"  seeds: {seed_dir}" if seed_dir is not None else ""))


def _summary(ds: WSSSDataset, where: str, cam_dir: Path, seed_dir: Path | None, threshold: float | None,
             cam_score: dict[str, Any] | None, fresh: bool) -> dict[str, Any]:
    """Scores of a finished split, written to ``cam_dir/summary.json`` (reused when nothing changed)."""
    path = cam_dir / "summary.json"
    if not fresh and path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old.get("bg_threshold") == threshold and old.get("images") == len(ds):
            return old
    seed_score = None
    if not has_ground_truth(ds):  # checked once here: without ground truth it reads the whole split
        cam_score, seed_score = {"miou": None, "best_threshold": None}, {"miou": None}
    elif cam_score is None:
        cam_score = sweep_cam_files(ds, cam_dir, ds.num_classes, desc="score CAMs", across_ranks=True)
    if seed_dir is not None and seed_score is None:
        seed_score = score_mask_files(ds, seed_dir, ds.num_classes, desc="score seeds", across_ranks=True)
    summary: dict[str, Any] = {
        "dataset": where,
        "images": len(ds),
        "classes": ["background", *ds.class_names],
        "cams": cam_score,
        "bg_threshold": threshold,
        "seeds": None if seed_dir is None else seed_score,
    }
    if is_main_process():
        write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _print_summary(summary: dict[str, Any], where: str) -> None:
    cams = summary["cams"]
    if cams.get("miou") is None:
        print(f"{where} has no ground truth: CAMs and seeds are not scored")
        return
    print(f"CAM sweep: best threshold {cams['best_threshold']:.2f}, mIoU {_percent(cams['miou'])}")
    if summary["seeds"] is not None:
        print(f"seeds (threshold {summary['bg_threshold']:.2f}): mIoU {_percent(summary['seeds']['miou'])}")
