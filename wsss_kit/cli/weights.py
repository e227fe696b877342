"""``wsss weights CONFIG`` (the files a config needs) and ``wsss weights --list`` (the released table)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..weights.required import INVALID, NOT_NEEDED

EXIT_OK, EXIT_MISSING, EXIT_CONFIG = 0, 1, 2

DESCRIPTION = (
    "List every weights file a config needs: the weights keywords it sets (weights, checkpoint, "
    "init_checkpoint, clip_weights, ...), any released:/timm:/open_clip:/pypi: spec or *.pt/*.pth path in "
    "it, and the defaults of the weights keywords its plugins leave out. For each: config key, spec, "
    "released name, file name, where to get it, SHA-256 (or 'unknown') and whether it is present under "
    "$WSSS_WEIGHTS_DIR (or at the given path); hub tags are looked up in the local caches only. "
    "With --list, print the table of released checkpoints instead."
)
EPILOG = (
    "exit status: 0 when every file is present (hub tags cached, or not needed online), 1 when something "
    "is missing or, with --verify, a file's SHA-256 differs from the reference, 2 on config errors "
    "(unreadable config, unknown plugin, a spec that names no weights such as an unknown released name).\n\n"
    "examples:\n"
    "  wsss weights my_run.yaml\n"
    "  wsss weights my_run.yaml --verify --format csv\n"
    "  wsss weights --list --pattern 'clip_*'\n"
)


def add_parser(sub: Any) -> None:
    """Register the ``weights`` sub-command on ``sub`` (the ``add_subparsers`` object)."""
    p = sub.add_parser("weights", help="list the weights files a config needs (present/missing), or --list the "
                       "released checkpoints", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("config", nargs="?", help="a run config (YAML)")
    p.add_argument("--list", action="store_true", help="print every released checkpoint (name, file, what it fits, "
                   "SHA-256 or unknown, source) and stop")
    p.add_argument("--pattern", default="*", help="with --list: only names matching this shell pattern, e.g. 'clip_*'")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before the walk (repeatable)")
    p.add_argument("--verify", action="store_true", help="hash every present file and compare with the known SHA-256")
    p.add_argument("--format", default="text", choices=("text", "csv", "json"))


def weights(args: argparse.Namespace) -> int:
    """Run ``wsss weights``; returns the exit status (see :data:`EPILOG`)."""
    if args.list:
        if args.config:
            raise ConfigError(f"wsss weights --list takes no CONFIG (got {args.config!r}); "
                              f"run `wsss weights {args.config}` for the files that config needs")
        return _print_released(args.pattern, args.format)
    if not args.config:
        raise ConfigError("wsss weights needs a CONFIG (the files it needs) or --list (the released checkpoints)")
    from ..config import load_config, validate
    from ..weights import required_weights, weights_dir

    cfg = load_config(args.config, args.overrides)
    validate(cfg, args.config)  # unknown plugins and keywords are config errors, before any file is looked at
    rows = required_weights(cfg, source=args.config, verify=args.verify)
    if args.format == "json":
        print(json.dumps([{**dataclasses.asdict(r), "missing": r.missing} for r in rows], indent=2))
    elif args.format == "csv":
        print(_csv([{**dataclasses.asdict(r), "sha256": r.sha256 or "unknown", "missing": r.missing} for r in rows]),
              end="")
    else:
        print(_config_text(args.config, rows, str(weights_dir())))
    invalid = [r for r in rows if r.status == INVALID]
    if invalid:
        print(f"wsss weights: error: {len(invalid)} spec(s) name no weights: "
              + "; ".join(f"{r.key}: {r.detail}" for r in invalid), file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_MISSING if any(r.problem for r in rows) else EXIT_OK


def _sha_text(sha: str | None) -> str:
    if not sha:
        return "unknown"
    return sha if len(sha) == 64 else f"{sha} (prefix)"


def _config_text(source: str, rows: Sequence[Any], folder: str) -> str:
    lines = [(f"{source}: {len(rows)} weights file{'s' if len(rows) != 1 else ''} "
              f"(released checkpoints are looked for in {folder}; WSSS_WEIGHTS_DIR sets another folder)")]
    if not rows:
        lines.append("  none: every network starts from random initialisation or from run artifacts")
    for r in rows:
        status = r.status.upper() if r.problem else r.status
        lines.append(f"{r.key}  {r.spec}  [{status}]" + ("  (plugin default)" if r.origin == "default" else ""))
        if r.status == NOT_NEEDED:
            if r.detail:  # why (e.g. the given checkpoint carries these weights)
                lines.append(f"    {r.detail}")
            continue
        if r.released:
            lines.append(f"    released  {r.released}")
        if r.filename:
            lines.append(f"    file      {r.filename}")
        lines.append(f"    where     {r.location}")
        if r.source:
            lines.append(f"    get it    {r.source}")
        lines.append(f"    sha256    {_sha_text(r.sha256)}")
        if r.notes:
            lines.append(f"    notes     {r.notes}")
        if r.verified:
            lines.append(f"    verified  {r.verified}"
                         + (f" (file has {r.actual_sha256})" if r.verified != "ok" else ""))
        if r.detail and r.problem:
            lines.append(f"    problem   {r.detail}")
    missing = [r for r in rows if r.problem]
    if missing:
        lines.append(f"{len(missing)} of {len(rows)} missing or wrong: " + ", ".join(r.key for r in missing))
    elif rows:
        lines.append("all present")
    return "\n".join(lines)


def _csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if records:
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: (";".join(v) if isinstance(v, (list, tuple)) else ("" if v is None else v))
                             for k, v in rec.items()})
    return buf.getvalue()


def _print_released(pattern: str, fmt: str) -> int:
    from ..weights import list_released

    rows = list_released(pattern)
    if not rows:
        raise ConfigError(f"--pattern {pattern!r} matches no released checkpoint; "
                          f"run `wsss weights --list` for all of them")
    if fmt == "json":
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return EXIT_OK
    if fmt == "csv":
        print(_csv([{**dataclasses.asdict(r), "sha256": r.sha256 or "unknown"} for r in rows]), end="")
        return EXIT_OK
    name_w = max(len(r.name) for r in rows)
    file_w = max(len(r.filename) for r in rows)
    sha_w = max(len(_sha_text(r.sha256)) for r in rows)
    state_w = max(len(_state_text(r)) for r in rows)
    print(f"{'name':<{name_w}}  {'file':<{file_w}}  {'sha256':<{sha_w}}  {'status':<{state_w}}  fits")
    for r in rows:
        print(f"{r.name:<{name_w}}  {r.filename:<{file_w}}  {_sha_text(r.sha256):<{sha_w}}  "
              f"{_state_text(r):<{state_w}}  {r.fits}")
        print(f"{'':<{name_w}}  source: {r.source}")
        print(f"{'':<{name_w}}  from:   {r.provider}")
        print(f"{'':<{name_w}}  path:   {r.path}")
    unknown = sum(r.sha256 is None for r in rows)
    shipped = [r for r in rows if r.packaged]
    print(f"{len(rows)} released checkpoints ({unknown} without a known SHA-256)"
          + (f", {len(shipped)} shipped with wsss_kit ({sum(not r.present for r in shipped)} missing)"
             if shipped else "") + "; spec: released:<name>")
    return EXIT_OK


def _state_text(row: Any) -> str:
    """``shipped`` / ``shipped, MISSING`` for files in the package, ``present`` / ``not downloaded`` for others."""
    if row.packaged:
        return "shipped" if row.present else "shipped, MISSING"
    return "present" if row.present else "not downloaded"
