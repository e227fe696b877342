"""Wall time and peak memory of `wsss demo`, stage by stage (target: under 10 minutes on 2 CPU cores).

    python benchmarks/demo_wall_time.py [--out DIR] [--set key=value ...]

Runs the demo in a fresh run directory, prints a table of stage times and mIoUs and writes
benchmarks/results/demo_wall_time.json (with the machine's description).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from wsss_kit.atomic import write_text
from wsss_kit.pipeline import STAGES, format_report

RESULTS = Path(__file__).resolve().parent / "results" / "demo_wall_time.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="run directory (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="wsss_demo_bench_"))
    if (out / "manifest.json").exists():
        parser.error(f"{out} already holds a run; the benchmark needs a fresh folder")
    cmd = [sys.executable, "-m", "wsss_kit.cli.main", "demo", "--out", str(out)]
    cmd += [a for item in args.overrides for a in ("--set", item)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"demo failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    result = {
        "wall_seconds": round(wall, 1),
        "stage_seconds": {s: stages[s].get("wall_seconds") for s in STAGES},
        "peak_rss_mb": round(peak_mb),
        "miou": {s: {k: v.get("miou") for k, v in stages[s].items() if isinstance(v, dict) and "miou" in v}
                 for s in STAGES},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.processor(),
                    "cuda": torch.cuda.is_available()},
        "overrides": args.overrides,
    }
    print()
    print(format_report(stages))
    print()
    for s in STAGES:
        print(f"{s:<14} {result['stage_seconds'][s]:>7.1f} s")
    print(f"{'total':<14} {wall:>7.1f} s   peak RSS {result['peak_rss_mb']} MB")
    write_text(args.results, json.dumps(result, indent=2) + "\n")
    print(f"saved {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
