"""Process-group helpers: the same calls work in one process and under ``torchrun`` (DDP).

Outside an initialised process group every helper acts as the single-process case (rank 0 of
1, reductions are identities), so engine code can call them unconditionally.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_reduce_mean",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "gather_objects",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "local_rank",
    "reduce_scalars",
    "unwrap_model",
]


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device | str | None = None) -> bool:
    """Join the process group that ``torchrun`` set up, once; return whether one is initialised.

    The group this call creates is destroyed when the interpreter exits (unless destroyed earlier).
    Nothing happens outside ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment) or when a
    group exists already (e.g. one the caller made). The backend is NCCL when ``device`` (default:
    CUDA if available) is a CUDA device, else gloo; with NCCL this process's CUDA device becomes
    ``cuda:LOCAL_RANK``. Rendezvous is torchrun's ``env://`` (``MASTER_ADDR``, ``MASTER_PORT``).
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("torchrun started this process, but this torch build has no torch.distributed")
    if device is None:
        cuda = torch.cuda.is_available()
    else:
        cuda = torch.device(device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device} asked for, but CUDA is not available")
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo")
    # A gloo group still alive at interpreter exit can abort the process ("terminate called
    # without an active exception") after all work succeeded, when DDP wrappers kept alive by
    # reference cycles (e.g. a caught exception's traceback) are torn down during shutdown.
    atexit.register(_leave_group_at_exit)
    return True


def _leave_group_at_exit() -> None:
    if is_distributed():
        import gc

        gc.collect()  # free cyclic DDP wrappers while their process group still exists
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """Rank within this machine, from ``LOCAL_RANK`` (set by torchrun); 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0: the only process that writes checkpoints, logs and final weights."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (``flag`` itself when not distributed); a collective."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _collective_device() -> torch.device:
    """Where a small tensor must live to be reduced: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place and return it (unchanged in one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over processes in place and return it (unchanged in one process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(get_world_size())
    return tensor


def reduce_scalars(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Average a dict of Python floats over processes with one collective (same keys on every rank)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        device = _collective_device()
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    all_reduce_mean(packed)
    return dict(zip(keys, packed.tolist()))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
