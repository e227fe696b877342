"""Wall time of `python -m benchmarks reproduce TABLE --smoke` for every table (target: each under 10
minutes on 2 CPU cores; the fast ones run in the test suite, the others are marked slow).

    python benchmarks/reproduce_smoke.py [--tables ID ...] [--results FILE]

Each table runs in a fresh output folder, so nothing is shared or resumed between tables (the
harness would share run folders between tables in one DIR). Writes
benchmarks/results/reproduce_smoke.json with the machine's description and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info  # sibling modules (benchmarks/ is on sys.path)

from wsss_kit.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reproduce_smoke.json"


def table_ids() -> list[str]:
    out = subprocess.run([sys.executable, "-m", "benchmarks", "reproduce", "--list"], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return out.stdout.split()


def smoke(table: str) -> dict:
    """One table's smoke run in a fresh folder: wall time, exit code, runs and per-run wall times."""
    with tempfile.TemporaryDirectory(prefix=f"reproduce_smoke_{table}_") as out:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks", "reproduce", table, "--smoke", "--out", out],
                              check=False, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        wall = round(time.perf_counter() - start, 1)
        record: dict = {"wall_seconds": wall, "exit_code": proc.returncode, "load_average_at_start": round(load, 2)}
        manifest = Path(out) / table / "manifest.json"
        if proc.returncode == 0 and manifest.exists():
            runs = json.loads(manifest.read_text())["runs"]
            record["runs"] = {r["name"]: r["wall_seconds_this_call"] for r in runs}
        else:
            record["error"] = (proc.stderr or proc.stdout)[-2000:]
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="*", help="table ids (default: every table)")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    results = {}
    for table in args.tables or table_ids():
        results[table] = smoke(table)
        r = results[table]
        print(f"{table:<18} {r['wall_seconds']:7.1f} s  exit {r['exit_code']}  runs {len(r.get('runs', {}))}", flush=True)
    path = Path(args.results)
    previous = json.loads(path.read_text())["tables"] if path.exists() and args.tables else {}
    write_text(path, json.dumps({"tables": {**previous, **results}, "machine": machine_info()}, indent=2) + "\n")
    print(f"written {path}")
    return 0 if all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
