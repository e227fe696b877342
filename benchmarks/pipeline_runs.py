"""Pipeline runs that benchmarks compare: copying a finished run's upstream stages so that variants
start from the same CAMs and seeds, and reading mIoU (%) out of stage records."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

UPSTREAM = ("train_cam", "cams", "seeds")


def miou(stages: dict, stage: str, splits: Iterable[str] = ("train", "eval")) -> dict:
    """``{split: mIoU %}`` of a stage record (splits the record lacks are left out)."""
    rec = stages[stage]
    return {split: round(100 * rec[split]["miou"], 2) for split in splits if isinstance(rec.get(split), dict)}


def copy_upstream(src: Path, dst: Path, stages: Iterable[str] = UPSTREAM) -> None:
    """Give ``dst`` the files of ``stages`` of the run ``src`` and their manifest entries (same
    fingerprints, so a variant config that changes only later sections resumes from them)."""
    stages = tuple(stages)
    dst.mkdir(parents=True, exist_ok=True)
    for folder in stages:
        shutil.copytree(src / folder, dst / folder)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in stages}
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))


def add_run_arguments(parser: argparse.ArgumentParser, results: Path) -> None:
    """The options every pipeline benchmark takes: ``--out``, ``--quick``, ``--set``, ``--results``."""
    parser.add_argument("--out", help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", default=str(results), help="results file")


def benchmark_config(config: Path, args: argparse.Namespace, quick: list[str]) -> tuple[dict, list[str]]:
    """``(config, overrides)``: ``config`` on the CPU with ``quick`` (under ``--quick``) and the
    ``--set`` overrides applied; the hub is kept offline."""
    from wsss_kit.config import apply_overrides, load_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    overrides = (quick if args.quick else []) + ["device=cpu"] + args.overrides
    return apply_overrides(load_config(config), overrides), overrides
