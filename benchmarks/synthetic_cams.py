"""CAM quality of every CAM generator on the procedural dataset: train each, extract CAMs, sweep the
background threshold.

    python benchmarks/synthetic_cams.py [--models resnet_cam,mctformer_v1,mctformer_v2] [--out DIR]

Runs `wsss run benchmarks/cams/synthetic_<model>.yaml --stages train_cam,cams` for each model in a
fresh folder, one after another (they would only slow each other down on a small CPU), then prints
and saves benchmarks/results/synthetic_cams.json: CAM mIoU at the best background threshold on the
training split (how the CAM papers report it) and on the held-out split, with wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wsss_kit.atomic import write_text

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "synthetic_cams.json"
MODELS = ("resnet_cam", "mctformer_v1", "mctformer_v2")


def run_one(model: str, out: Path, overrides: list[str]) -> dict:
    config = HERE / "cams" / f"synthetic_{model}.yaml"
    cmd = [sys.executable, "-m", "wsss_kit.cli.main", "run", str(config), "--stages", "train_cam,cams",
           "--out", str(out)] + [a for item in overrides for a in ("--set", item)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    if proc.returncode != 0:
        raise SystemExit(f"{model}: `{' '.join(cmd)}` failed with exit code {proc.returncode}")
    wall = time.perf_counter() - start
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    cams = stages["cams"]
    return {
        "config": str(config.relative_to(HERE.parent)),
        "train_miou": cams["train"]["miou"],
        "train_best_threshold": cams["train"]["best_threshold"],
        "eval_miou": cams["eval"]["miou"],
        "eval_best_threshold": cams["eval"]["best_threshold"],
        "train_cam_seconds": stages["train_cam"].get("wall_seconds"),
        "cams_seconds": stages["cams"].get("wall_seconds"),
        "wall_seconds": round(wall, 1),
        "final_loss": stages["train_cam"].get("final_loss"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--out", help="parent folder for the runs (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every config")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    root = Path(args.out or tempfile.mkdtemp(prefix="wsss_synthetic_cams_"))
    results = {m: run_one(m, root / m, args.overrides) for m in models}
    print(f"\n{'model':<14} {'train mIoU':>10} {'thr':>5} {'eval mIoU':>10} {'thr':>5} {'train s':>8} {'CAMs s':>7}")
    for m, r in results.items():
        print(f"{m:<14} {100 * r['train_miou']:>10.1f} {r['train_best_threshold']:>5.2f} "
              f"{100 * r['eval_miou']:>10.1f} {r['eval_best_threshold']:>5.2f} "
              f"{r['train_cam_seconds'] or 0:>8.0f} {r['cams_seconds'] or 0:>7.0f}")
    record = {
        "results": results,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "cuda": torch.cuda.is_available()},
        "overrides": args.overrides,
    }
    write_text(Path(args.results), json.dumps(record, indent=2) + "\n")
    print(f"\nsaved {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
