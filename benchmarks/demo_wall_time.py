"""Wall time and peak memory of `wsss demo [--pipeline NAME]`, stage by stage (target: under 10 minutes
on 2 CPU cores for every pipeline).

    python benchmarks/demo_wall_time.py [--pipeline NAME] [--out DIR] [--set key=value ...]
        [--weights-dir DIR] [--results PATH]

Runs the demo in a fresh run directory, prints a table of stage times and mIoUs and writes
benchmarks/results/demo_wall_time.json (the default ``resnet_cam`` pipeline) or
demo_wall_time_<NAME>.json, with the machine's description and its load average before and after
(on a shared CPU a number is only comparable with the load it ran under). For ``clims`` and ``pole``
the baseline run's stages (``baseline/``) are timed too. The demo's CPU time is recorded beside its
wall time: run with ``OMP_NUM_THREADS=1`` on a busy machine, it is what the demo costs on one free
core, an upper bound on its wall time on two free ones.

``--weights-dir DIR`` runs the demo with the world's ``released:`` files read from DIR instead of the
ones shipped in wsss_kit/pretrained (e.g. random stand-ins of the same architectures, to time a
checkout that does not have the trained files yet); the results file records which files were used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info  # sibling module (benchmarks/ is on sys.path)

from wsss_kit.atomic import write_text
from wsss_kit.cli.demo import BASELINE_STAGES, DEFAULT_PIPELINE, DEMO_PIPELINES
from wsss_kit.pipeline import STAGES, format_report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
WORLD_WEIGHTS = ("wsss_world_resnet50", "wsss_world_vit", "wsss_synthetic_clip")

# the demo's CLI with the shipped-weights folder moved (--weights-dir): argv[1] is the folder
_PATCHED_CLI = ("import sys; from pathlib import Path; import wsss_kit.weights.released as r; "
                "r.PACKAGED_DIR = Path(sys.argv[1]); from wsss_kit.cli.main import main; sys.exit(main(sys.argv[2:]))")


def results_path(pipeline: str) -> Path:
    """``demo_wall_time.json`` for the default pipeline, ``demo_wall_time_<pipeline>.json`` otherwise."""
    return RESULTS_DIR / ("demo_wall_time.json" if pipeline == DEFAULT_PIPELINE else f"demo_wall_time_{pipeline}.json")


def weights_used(folder: Path) -> dict[str, str | None]:
    """The SHA-256 (first 16 hex digits) of each world file in ``folder`` (``None``: absent)."""
    from wsss_kit.weights import sha256_of

    out: dict[str, str | None] = {}
    for name in WORLD_WEIGHTS:
        path = folder / f"{name}.pt"
        out[name] = sha256_of(path)[:16] if path.is_file() else None
    return out


def _mious(stages: dict, names: tuple[str, ...]) -> dict:
    return {s: {k: v.get("miou") for k, v in stages.get(s, {}).items() if isinstance(v, dict) and "miou" in v}
            for s in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE, choices=tuple(DEMO_PIPELINES))
    parser.add_argument("--out", help="run directory (default: a new temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--weights-dir", metavar="DIR",
                        help="read the world's released: files from DIR instead of wsss_kit/pretrained")
    parser.add_argument("--results", help="results file (default: benchmarks/results/demo_wall_time[_NAME].json)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix=f"wsss_demo_{args.pipeline}_bench_"))
    if (out / "manifest.json").exists():
        parser.error(f"{out} already holds a run; the benchmark needs a fresh folder")
    demo = ["demo", "--pipeline", args.pipeline, "--out", str(out)]
    demo += [a for item in args.overrides for a in ("--set", item)]
    if args.weights_dir:
        folder = Path(args.weights_dir).resolve()
        cmd = [sys.executable, "-c", _PATCHED_CLI, str(folder)] + demo
    else:
        from wsss_kit.weights import packaged_dir

        folder = packaged_dir()
        cmd = [sys.executable, "-m", "wsss_kit.cli.main"] + demo
    load_before = [round(v, 2) for v in os.getloadavg()]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"demo failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb = usage.ru_maxrss / 1024
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    result = {
        "pipeline": args.pipeline,
        "wall_seconds": round(wall, 1),
        # the demo's CPU time (user + system): with one thread (OMP_NUM_THREADS=1) what the run costs on one
        # free core, an upper bound on its wall time on 2 free cores, however loaded the machine was
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "stage_seconds": {s: stages[s].get("wall_seconds") for s in STAGES},
        "peak_rss_mb": round(peak_mb),
        "miou": _mious(stages, STAGES),
        "weights": {"folder": str(folder), "shipped": not args.weights_dir, "sha256_16": weights_used(folder)},
        "machine": machine_info(load_average_before=load_before),
        "overrides": args.overrides,
    }
    baseline_manifest = out / "baseline" / "manifest.json"
    if DEMO_PIPELINES[args.pipeline].baseline and baseline_manifest.is_file():
        base = json.loads(baseline_manifest.read_text())["stages"]
        result["baseline"] = {"stage_seconds": {s: base[s].get("wall_seconds") for s in BASELINE_STAGES},
                              "miou": _mious(base, BASELINE_STAGES)}
    print()
    print(format_report(stages))
    print()
    for s in STAGES:
        print(f"{s:<14} {result['stage_seconds'][s]:>7.1f} s")
    if "baseline" in result:
        for s, sec in result["baseline"]["stage_seconds"].items():
            print(f"{'baseline ' + s:<14} {sec:>7.1f} s")
    print(f"{'total':<14} {wall:>7.1f} s   CPU {result['cpu_seconds']:.1f} s   peak RSS {result['peak_rss_mb']} MB   load {load_before} -> "
          f"{result['machine']['load_average']}")
    target = Path(args.results) if args.results else results_path(args.pipeline)
    write_text(target, json.dumps(result, indent=2) + "\n")
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
