"""Running the pipeline under ``torchrun``: joining the process group, sharding by rank, and
checking the training batch sizes against the number of processes before anything is written.

    torchrun --nproc_per_node=4 -m wsss_kit.cli.main run CONFIG

Every process runs the same stages. Training stages train one model with DistributedDataParallel
(see :func:`wsss_kit.engine.train`); inference stages split the items over the processes (rank
``r`` of ``N`` handles items ``r, r + N, ...``; combined with ``--shard i/n`` it handles
``i + n * r, i + n * (r + N), ...``); the processes meet before a stage's files are counted and
scored (:func:`~wsss_kit.pipeline.items.all_exist`), the scores are summed over the processes
(:mod:`~wsss_kit.pipeline.evaluation`), and only rank 0 writes the manifest and the report.
"""

from __future__ import annotations

from typing import Iterable

from ..engine import TrainConfig
from ..engine.distributed import barrier, get_rank, get_world_size, init_distributed
from ..errors import ConfigError
from .context import RunContext, Shard

__all__ = ["TRAIN_SECTIONS", "check_batch_sizes", "join_process_group", "process_shard"]

TRAIN_SECTIONS = {"train_cam": "cam.train", "train_refiner": "refiner_train", "train_head": "head.train"}
"""The training config (a :class:`~wsss_kit.engine.TrainConfig` mapping) of each training stage."""


def process_shard(shard: Shard, rank: int | None = None, world: int | None = None) -> Shard:
    """The items of ``shard`` (the user's ``--shard i/n``) that process ``rank`` of ``world`` handles:
    ``Shard(i + n * rank, n * world)`` (``shard`` itself in one process)."""
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    if world == 1:
        return shard
    return Shard(shard.rank + shard.count * rank, shard.count * world)


def check_batch_sizes(ctx: RunContext, stages: Iterable[str], world: int | None = None) -> None:
    """Raise :class:`ConfigError` when the number of processes does not divide the (global)
    ``batch_size`` of a training stage among ``stages``, naming the config key, both numbers and
    the process counts that would work."""
    world = get_world_size() if world is None else world
    if world == 1:
        return
    for stage in stages:
        key = TRAIN_SECTIONS.get(stage)
        section = ctx.get(key, None) if key else None
        if not isinstance(section, dict):
            continue
        batch = section.get("batch_size", TrainConfig.batch_size)
        if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0 and batch % world:
            fits = [n for n in range(1, batch + 1) if batch % n == 0]
            raise ConfigError(
                f"{ctx.source}: {key}.batch_size {batch} (the global batch of stage {stage}, split over the "
                f"processes) is not divisible by the number of processes, {world}; set it to a multiple of "
                f"{world} (--set {key}.batch_size={max(world, batch // world * world)}) or run "
                f"{', '.join(map(str, fits))} processes")


def join_process_group(ctx: RunContext, pending: Iterable[str]) -> None:
    """Under ``torchrun``: join the process group (NCCL for a CUDA ``device``, else gloo), check the
    batch sizes of the ``pending`` training stages (those this run computes), give ``ctx`` this
    process's shard, and wait until every process has read the run's manifest (before rank 0 may
    write it). Outside ``torchrun`` nothing changes."""
    if not init_distributed(ctx.device):
        return
    check_batch_sizes(ctx, list(pending))
    ctx.shard = process_shard(ctx.shard)
    barrier()

