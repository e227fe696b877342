"""Running one resolved run config from the command line (``wsss run``, ``wsss demo``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["print_run_summary", "run_config"]


def print_run_summary(stages: dict[str, Any], run_dir: Path, seconds: float, refiner: str) -> None:
    """The report of a complete run (its stage-wise mIoU table, why a cell is empty) and the wall time."""
    from ..pipeline.report_notes import empty_cell_notes
    from ..pipeline.runner import format_report, report_rows

    if all(s.get("complete") for s in stages.values()) and "eval" in stages:
        print()
        print(format_report(stages, refiner))
        notes = empty_cell_notes(stages, [(stage, title) for stage, title, _ in report_rows(stages, refiner)])
        if notes:
            print("\nEmpty cells (-):\n" + "\n".join(notes))
        print(f"\nrun directory: {run_dir}  (results.md, pictures/, <stage>/loss_curves.png, "
              "config.resolved.yaml, provenance.json)")
    print(f"wall time: {seconds:.0f} s")


def run_config(cfg: dict[str, Any], args: argparse.Namespace, source: str,
               stages: Sequence[str] | None = None, restart: str | None = None) -> int:
    """Run (or, with ``--print-config`` / ``--dry-run``, show or plan) one resolved run config
    the way ``wsss run`` does, and print the stage-wise report when the run is complete.

    ``args`` carries the run options (``out``, ``shard``, ``print_config``, ``dry_run``);
    ``source`` names the config in messages and provenance. Returns the exit status."""
    from ..config import dump_config
    from ..pipeline import Shard, run_pipeline
    from ..pipeline.runner import refiner_name

    if getattr(args, "print_config", False):
        print(dump_config(cfg).rstrip())
        return 0
    start = time.perf_counter()
    run_dir = Path(args.out or cfg.get("run_dir") or "runs/default")
    dry_run = bool(getattr(args, "dry_run", False))
    result = run_pipeline(cfg, run_dir, stages=stages, restart=restart, shard=Shard.parse(args.shard),
                          source=source, dry_run=dry_run)
    if not dry_run:
        print_run_summary(result, run_dir, time.perf_counter() - start, refiner_name(cfg))
    return 0
