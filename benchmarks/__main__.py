"""``python -m benchmarks COMMAND ...``: a dispatcher of sub-commands.

A sub-command is a module with ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
adding one (``speed``, ``pretrain``) is adding a line to :data:`COMMANDS`. Modules are imported only
when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMANDS: dict[str, str] = {
    "reproduce": "benchmarks.reproduce.cli",
    "pretrain": "benchmarks.pretrain",
    "speed": "benchmarks.speed.cli",
}
"""Sub-command → the module that implements it."""

_HELP = {"reproduce": "run a paper's table (its configs, chained) and score it against the paper",
         "pretrain": "pretrain the embedded world's foundations (tiny CLIP, ResNet, ViT) from a seed",
         "speed": "time every speed/memory measure (CRF, CAMs, training steps, pseudo masks, mIoU) and plot them"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all of them for ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="wsss_kit benchmarks and tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=_HELP.get(name, ""))
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", None))
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command).parse_args(argv)
    return int(importlib.import_module(COMMANDS[args.command]).run(args))


if __name__ == "__main__":
    sys.exit(main())
