"""The training engine: a plain PyTorch loop with AMP, gradient accumulation, exact resume,
atomic checkpoints, tqdm progress and a CSV log; on one device or under ``torchrun`` (DDP, with the
global batch split over the processes and checkpoints that resume under any number of them).

    from wsss_kit.engine import TrainConfig, train
    result = train(model, dataset, TrainConfig(steps=1000, lr=0.01), "runs/cam")
"""

from .checkpoint import load_model_weights, load_training_state, save_model_weights, save_training_state
from .csv_log import CsvLog, read_log
from .distributed import (
    all_reduce_mean,
    all_reduce_sum,
    any_rank,
    barrier,
    gather_objects,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    launched_by_torchrun,
    local_rank,
    reduce_scalars,
    unwrap_model,
)
from .sampling import EpochSampler, SeededSamples, epoch_permutation, sample_seed
from .schedule import SCHEDULES, StepSchedule, lr_at
from .seeding import capture_rng_state, restore_rng_state, seed_everything, worker_init_fn
from .train_config import OPTIMIZERS, TRAJECTORY_FIELDS, TrainConfig
from .trainer import TrainResult, build_optimizer, default_step, move_to_device, resolve_device, train

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "TRAJECTORY_FIELDS",
    "CsvLog",
    "EpochSampler",
    "SeededSamples",
    "StepSchedule",
    "TrainConfig",
    "TrainResult",
    "all_reduce_mean",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "build_optimizer",
    "capture_rng_state",
    "default_step",
    "epoch_permutation",
    "gather_objects",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "load_training_state",
    "load_model_weights",
    "local_rank",
    "lr_at",
    "move_to_device",
    "read_log",
    "reduce_scalars",
    "resolve_device",
    "restore_rng_state",
    "sample_seed",
    "save_training_state",
    "save_model_weights",
    "seed_everything",
    "train",
    "unwrap_model",
    "worker_init_fn",
]
