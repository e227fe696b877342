"""The training engine: a plain PyTorch loop with AMP, gradient accumulation, exact resume,
atomic checkpoints, progress (a tqdm bar, or plain lines in a log) and a CSV log; on one device or
under ``torchrun`` (DDP, with the global batch split over the processes and checkpoints that resume
under any number of them).

    from wsss_kit.engine import TrainConfig, train
    result = train(model, dataset, TrainConfig(steps=1000, lr=0.01), "runs/cam")
"""

from .checkpoint import load_model_weights, load_training_state, save_model_weights, save_training_state
from .csv_log import read_log
from .distributed import barrier, get_rank, get_world_size, init_distributed, is_main_process, unwrap_model
from .schedule import lr_at
from .seeding import seed_everything, worker_init_fn
from .train_config import TrainConfig
from .trainer import TrainResult, build_optimizer, default_step, train

# The public surface: what a training script or a plugin uses. The helpers the loop is built from
# (samplers, RNG capture, the CSV writer, collective ops, device moves) are importable from their
# modules (wsss_kit.engine.sampling, .seeding, .csv_log, .distributed, .trainer) for the core's use.
__all__ = [
    "TrainConfig",
    "TrainResult",
    "barrier",
    "build_optimizer",
    "default_step",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "load_model_weights",
    "load_training_state",
    "lr_at",
    "read_log",
    "save_model_weights",
    "save_training_state",
    "seed_everything",
    "train",
    "unwrap_model",
    "worker_init_fn",
]
