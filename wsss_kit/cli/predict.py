"""``wsss predict CONFIG``: a retrain head's predictions of one split, without a pipeline.

Predicts ``data.<split>`` with ``head.model`` and its trained weights (``--checkpoint``, else
``head.model.checkpoint``, else ``<run_dir>/train_head/model.pt``) under ``head.infer`` (scales,
flips, aggregation, CRF), writing ``<out>/predictions/<split>/<name>.png``. The loop is
:func:`wsss_kit.pipeline.mask_writers.write_predictions`, the ``eval`` stage's own. Sharded by
``--shard i/n`` and torchrun ranks, resumable, scored into ``summary.json`` when the split has
ground truth.
"""

from __future__ import annotations

import argparse

from ..config import check_keys
from ..errors import ConfigError
from ..pipeline.cam_export import record_settings, weights_digest
from ..pipeline.mask_writers import HEAD_INFER_KEYS, head_infer_settings, write_predictions
from ..pipeline.stages import trained_head
from .split_command import finish_split, start_split

__all__ = ["predict"]


def predict(args: argparse.Namespace) -> int:
    """Predict this shard's items of one split; score the split once all its predictions exist."""
    job = start_split(args, "predictions", reads=("data", "head.model", "head.infer"))
    ctx = job.ctx
    if ctx.get("head.model", None) is None:
        raise ConfigError(f"{args.config}: wsss predict needs head.model (e.g. head: {{model: {{type: heads/smp, "
                          "arch: DeepLabV3Plus, encoder_name: resnet50}}}})")
    infer = dict(ctx.get("head.infer", {}) or {})
    check_keys(infer, HEAD_INFER_KEYS, "head.infer")
    settings = head_infer_settings(infer)
    computed = 0
    if job.todo:
        model, weights = trained_head(ctx, args.checkpoint)
        print(f"weights: {weights}")
        record_settings(job.out, {"head": ctx.get("head.model")["type"], "weights_sha256": weights_digest(model),
                                  "infer": {**settings, "scales": list(settings["scales"])}}, "predictions")
        computed = write_predictions(model, job.ds, job.todo, job.out, infer=settings,
                                     num_outputs=ctx.num_classes + 1, palette=job.ds.palette, device=ctx.device,
                                     desc=f"predict [{job.split}]")
    else:
        print("weights: not needed (every prediction of this shard exists)")
    print(f"shard {ctx.shard.rank}/{ctx.shard.count}: {computed} predictions computed, "
          f"{len(job.mine) - computed} already complete")
    return finish_split(job, "predictions", computed, {"head": ctx.get("head.model")["type"]})
