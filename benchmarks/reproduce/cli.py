"""``python -m benchmarks reproduce``: the command line of :func:`benchmarks.reproduce.reproduce`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from wsss_kit.errors import WSSSError

__all__ = ["add_arguments", "main", "run"]

HELP = "run a paper's table (its configs, chained) and score it against the paper"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``reproduce`` sub-command's options."""
    p.add_argument("table", nargs="?", help="table id (see --list)")
    p.add_argument("--list", action="store_true", help="print the table ids, one per line, and stop")
    p.add_argument("--data-root", help="folder holding the datasets the configs name (VOCdevkit/, coco/); "
                                       "required unless --smoke")
    p.add_argument("--weights-dir", help="folder of the released weights (sets WSSS_WEIGHTS_DIR for the runs)")
    p.add_argument("--out", default=None, help="output folder DIR: DIR/TABLE/results.* and the runs in DIR/runs/ "
                                              "(default: ./reproduce; with --embedded benchmarks/results/embedded)")
    p.add_argument("--smoke", action="store_true",
                   help="the same runs and chaining on the embedded synthetic dataset with tiny random models "
                        "and a few steps (minutes on a CPU; the numbers mean nothing)")
    p.add_argument("--embedded", action="store_true",
                   help="the same runs and chaining on the embedded synthetic world with its shipped pretrained "
                        "foundations, at sizes that separate the rows (each table <= ~15 min on 2 CPU cores; "
                        "the world's numbers, with the paper's beside for reference)")


def run(args: argparse.Namespace) -> int:
    """Do what the parsed ``args`` ask; the exit code."""
    from . import EMBEDDED_OUT, format_results, reproduce, table_ids

    if args.list:
        print("\n".join(table_ids()))
        return 0
    if not args.table:
        print("python -m benchmarks reproduce: error: give a table id (or --list)", file=sys.stderr)
        return 2
    if args.smoke and args.embedded:
        print("python -m benchmarks reproduce: error: --smoke and --embedded exclude each other", file=sys.stderr)
        return 2
    if args.out is None:
        args.out = str(EMBEDDED_OUT) if args.embedded else "reproduce"
    try:
        measured = reproduce(args.table, args.out, data_root=args.data_root, weights_dir=args.weights_dir,
                             smoke=args.smoke, embedded=args.embedded)
    except WSSSError as exc:
        print(f"python -m benchmarks reproduce: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # as `wsss`: finished runs and stages are kept, the same command resumes
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    print()
    print(format_results(measured))
    print(f"\nwritten: {args.out}/{args.table}/results.csv, results.md, results.png, manifest.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks reproduce ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks reproduce", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
