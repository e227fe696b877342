"""``wsss refine CONFIG``: pseudo masks of one split from a refiner, without a pipeline.

Refines the run directory's ``cams/<split>`` or ``seeds/<split>`` (``pseudo_masks.input``; ``auto``:
the CAMs when that folder exists, else the seeds; seeds from ``seeds.source`` when the config brings them) with the
config's ``refiner`` and its trained weights (``--checkpoint``, else ``refiner.checkpoint``, else
``<run_dir>/train_refiner/model.pt`` for a trainable refiner), writing
``<out>/pseudo_masks/<split>/<name>.png``. The loop is
:func:`wsss_kit.pipeline.mask_writers.write_pseudo_masks`, the stage's own. Sharded by ``--shard i/n``
and torchrun ranks, resumable, scored into ``summary.json`` when the split has ground truth.
"""

from __future__ import annotations

import argparse

import torch

from ..errors import ConfigError
from ..pipeline.cam_export import record_settings, weights_digest
from ..pipeline.mask_writers import write_pseudo_masks
from ..pipeline.sources import pseudo_mask_sources, seed_sources
from ..pipeline.stages import refiner_input, trained_refiner
from .split_command import finish_split, start_split

__all__ = ["refine"]


def refine(args: argparse.Namespace) -> int:
    """Refine this shard's items of one split; score the split once all its pseudo masks exist."""
    job = start_split(args, "pseudo_masks", reads=("data", "refiner", "pseudo_masks", "seeds"))
    ctx = job.ctx
    if ctx.get("refiner", None) is None:
        raise ConfigError(f"{args.config}: wsss refine needs a refiner section (e.g. refiner: {{type: "
                          "refiners/dense_crf}})")
    if pseudo_mask_sources(ctx):
        raise ConfigError(f"{args.config}: pseudo_masks.source brings the pseudo masks: there is nothing to refine "
                          "(remove it with --set pseudo_masks.source=null)")
    opts = dict(ctx.get("pseudo_masks", {}) or {})
    if str(opts.get("input", "auto")) == "auto":  # the CAMs when the run directory has them, else the seeds
        kind = "cams" if ctx.path("cams", job.split).is_dir() else "seeds"
    else:
        kind = refiner_input(ctx, opts)
    sources = seed_sources(ctx) if kind == "seeds" else {}
    input_dir = sources.get(job.split, ctx.path(kind, job.split))
    if job.todo and not input_dir.is_dir():
        raise ConfigError(f"the refiner reads {kind} (pseudo_masks.input), and {input_dir} does not exist: make "
                          f"them first (wsss cam {args.config} --split {job.split}, or the run's stages), or "
                          f"set pseudo_masks.input")
    computed = 0
    weights = "not needed (every pseudo mask of this shard exists)"
    if job.todo:
        refiner, weights = trained_refiner(ctx, args.checkpoint)
        print(f"weights: {weights}")
        module = isinstance(refiner, torch.nn.Module)
        record_settings(job.out, {"refiner": ctx.get("refiner")["type"], "input": kind,
                                  "weights_sha256": weights_digest(refiner) if module else None}, "pseudo masks")
        batch = args.batch_size or int(opts.get("batch_size", 8))
        computed = write_pseudo_masks(refiner, job.ds, job.todo, job.out, input_kind=kind, input_dir=input_dir,
                                      num_classes=ctx.num_classes, palette=job.ds.palette, batch_size=batch,
                                      device=ctx.device if module else torch.device("cpu"),
                                      desc=f"pseudo masks [{job.split}]", stage=f"wsss refine [{job.split}]")
    else:
        print(f"weights: {weights}")
    print(f"shard {ctx.shard.rank}/{ctx.shard.count}: {computed} pseudo masks computed, "
          f"{len(job.mine) - computed} already complete; input: {input_dir}")
    return finish_split(job, "pseudo_masks", computed, {"input": kind, "refiner": ctx.get("refiner")["type"]})
