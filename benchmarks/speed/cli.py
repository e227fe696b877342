"""``python -m benchmarks speed``: every speed and memory measure of the toolkit in one run.

    python -m benchmarks speed --list
    python -m benchmarks speed [MEASURE ...] [--quick] [--rounds N] [--device cpu|cuda] [--out FILE]
        [--sweep MEASURE=V1,V2 ...] [--official-weakclip PATH] [--official-mctformer PATH]
        [--official-clims PATH] [--markdown] [--in-process]

Each measure (``--list``) runs in its own child process (so that its peak memory is its own)
over its sweep (``full``, or ``quick``: small inputs, the whole run in minutes on 2 cores): per
point, the variants interleaved round by round (:mod:`benchmarks.speed.harness`), the median,
min and max of ``--rounds`` after one warm-up, peak memory, the load average before and after.
Writes (atomically) ``benchmarks/results/speed.json`` (or ``--out``) and the PNG beside it
(``.png``); ``--markdown`` prints the table. Timings are never asserted by the tests.
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
from typing import Any, Sequence

import torch

from .harness import summarise
from .registry import OFFICIAL_REPOS, Context, Measure, get_measures, list_measures

HELP = "time every speed/memory measure (CRF, CAMs, training steps, pseudo masks, mIoU) and plot them"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "speed.json"
METHOD = ("per point: variants built in one process, one call of each per round (order rotated), "
          "{warmup} warm-up round(s) then median/min/max of {rounds}; peak RSS sampled every 5 ms "
          "(and ru_maxrss when a call raised it) or torch.cuda.max_memory_allocated; one child process "
          "per measure")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("measures", nargs="*", metavar="MEASURE", help="measures to run (default: all; --list)")
    parser.add_argument("--list", action="store_true", help="print the measures, one per line, and exit")
    parser.add_argument("--quick", action="store_true", help="the small sweeps (the whole run in minutes)")
    parser.add_argument("--rounds", type=int, default=None, help="counted rounds per point (default 5; 3 quick)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds per point (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument("--sweep", action="append", default=[], metavar="MEASURE=V1,V2",
                        help="replace a measure's sweep values (positive integers), e.g. miou_eval=100,1449")
    parser.add_argument("--markdown", action="store_true", help="print the markdown table")
    parser.add_argument("--in-process", action="store_true", help="run the measures in this process")
    for key, repo in OFFICIAL_REPOS.items():
        parser.add_argument(f"--official-{key}", metavar="PATH", help=f"a local checkout of {repo} to measure")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tests' sizes
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)


def parse_sweeps(items: Sequence[str], measures: Sequence[Measure]) -> dict[str, list[int]]:
    """``["crf=94,188"]`` → ``{"crf": [94, 188]}``.

    Raises:
        ValueError: naming ``--sweep``, for a malformed item, a measure not being run, or a value
            that is not a positive integer.
    """
    names = {m.name for m in measures}
    out: dict[str, list[int]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--sweep expects MEASURE=V1,V2,..., got {item!r}")
        if name not in names:
            raise ValueError(f"--sweep {item!r}: {name!r} is not among the measures run ({', '.join(sorted(names))})")
        parsed = []
        for v in values.split(","):
            try:
                parsed.append(int(v))
            except ValueError:
                parsed.append(0)
            if parsed[-1] < 1:
                raise ValueError(f"--sweep {name}: values must be positive integers, got {v!r}")
        out[name] = parsed
    return out


def _official(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for key in OFFICIAL_REPOS:
        path = getattr(args, f"official_{key}", None)
        if path:
            if not Path(path).is_dir():
                raise ValueError(f"--official-{key}: {path} is not a directory (a checkout of {OFFICIAL_REPOS[key]})")
            out[key] = str(Path(path).resolve())
    return out


def run_measure(measure: Measure, points: Sequence[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """Measure every point of ``measure`` in this process: its record for the results file."""
    record: dict[str, Any] = {"title": measure.title, "axis": measure.axis, "axis_label": measure.axis_label,
                              "unit": measure.unit, "baseline": measure.baseline, "points": []}
    threads = torch.get_num_threads()
    for point in points:
        load_before = [round(v, 2) for v in os.getloadavg()]
        start = time.perf_counter()
        timed = measure.fn(point, ctx)
        record["points"].append({
            "x": point[measure.axis], "config": _jsonable(point), "variants": summarise(timed, measure.baseline),
            "official": timed.official, "extra": _jsonable(timed.extra),
            "wall_s": round(time.perf_counter() - start, 2),
            "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "torch_threads": threads})
        print(f"  {measure.name} {measure.axis}={point[measure.axis]}: " + ", ".join(
            f"{v} {r['per_unit_s']:.4g} s/{measure.unit}" for v, r in record["points"][-1]["variants"].items()),
            file=sys.stderr, flush=True)
    officials = {p["official"] for p in record["points"] if p["official"]}
    record["official"] = officials.pop() if len(officials) == 1 else (sorted(officials) or None)
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _in_process(measure: Measure, points: Sequence[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    try:
        return run_measure(measure, points, ctx)
    except Exception as exc:  # one failing measure is recorded; the others still run
        import traceback

        traceback.print_exc()
        return {"title": measure.title, "error": f"{type(exc).__name__}: {exc}"}


def _child(measure: Measure, args: argparse.Namespace, argv_tail: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsss_speed_") as tmp:
        out = Path(tmp) / "measure.json"
        cmd = [sys.executable, "-m", "benchmarks", "speed", measure.name, "--child-out", str(out), *argv_tail]
        tail: list[str] = []
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:  # progress as it comes; the end kept for the error message
                sys.stderr.write(line)
                tail = (tail + [line])[-40:]
        if proc.returncode != 0 or not out.exists():
            text = "".join(tail).strip()[-2000:] or "no output"
            return {"title": measure.title, "error": f"child exited with {proc.returncode}: {text}"}
        return dict(json.loads(out.read_text()))


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_measures():
            print(name)
        return 0
    try:
        measures = get_measures(args.measures)
        sweeps = parse_sweeps(args.sweep, measures)
        official = _official(args)
        rounds = args.rounds if args.rounds is not None else (3 if args.quick or args.tiny else 5)
        if rounds < 1 or args.warmup < 0:
            raise ValueError(f"--rounds must be >= 1 and --warmup >= 0, got {rounds} and {args.warmup}")
        if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
            raise ValueError(f"--device must be cpu or cuda (cuda only where CUDA is available), got {args.device!r}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    ctx = Context(device=torch.device(args.device), rounds=rounds, warmup=args.warmup, official=official)
    if args.child_out is not None:  # one measure, in this (child) process
        from wsss_kit.atomic import write_text

        m = measures[0]
        write_text(args.child_out, json.dumps(run_measure(m, m.sweep(size, sweeps.get(m.name)), ctx)) + "\n")
        return 0
    from benchmarks.machine import machine_info

    tail = ["--rounds", str(rounds), "--warmup", str(args.warmup), "--device", args.device,
            *(["--quick"] if args.quick else []), *(["--tiny"] if args.tiny else []),
            *[f"--sweep={s}" for s in args.sweep],
            *[f"--official-{k}={p}" for k, p in official.items()]]
    load_before = [round(v, 2) for v in os.getloadavg()]
    start = time.perf_counter()
    results: dict[str, Any] = {"measures": {}}
    for m in measures:
        print(f"{m.name}: {m.title}", file=sys.stderr, flush=True)
        results["measures"][m.name] = (_in_process(m, m.sweep(size, sweeps.get(m.name)), ctx) if args.in_process
                                       else _child(m, args, tail))
    record = {"benchmark": "speed", "sweep": size, "rounds": rounds, "warmup": args.warmup, "device": args.device,
              "method": METHOD.format(rounds=rounds, warmup=args.warmup) + (" (in-process)" if args.in_process else ""),
              "command": "python -m benchmarks speed " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["speed"] else []),
              "wall_s": round(time.perf_counter() - start, 1), "official_checkouts": official,
              "machine": machine_info(load_average_before=load_before,
                                      load_average_after=[round(v, 2) for v in os.getloadavg()],
                                      omp_num_threads=os.environ.get("OMP_NUM_THREADS")),
              **results}
    return _write(record, args)


def _write(record: dict[str, Any], args: argparse.Namespace) -> int:
    from wsss_kit.atomic import write_text

    from .report import markdown_table, write_chart

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}", file=sys.stderr)
    if any(not m.get("error") for m in record["measures"].values()):
        print(f"saved {write_chart(record, args.out.with_suffix('.png'))}", file=sys.stderr)
    if args.markdown:
        print(markdown_table(record))
    failed = [n for n, m in record["measures"].items() if m.get("error")]
    if failed:
        print(f"failed: {', '.join(failed)} (see 'error' in {args.out})", file=sys.stderr)
    return 1 if failed else 0
