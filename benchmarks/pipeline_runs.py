"""Pipeline runs that benchmarks compare: copying a finished run's upstream stages so that variants
start from the same CAMs and seeds, and reading mIoU (%) out of stage records."""

from __future__ import annotations

import json
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
