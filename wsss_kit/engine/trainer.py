"""The training loop: one device now, written so that DDP needs no change of structure.

Per optimizer step: set the scheduled learning rate, run ``grad_accum`` micro-batches (each loss
divided by ``grad_accum``) under autocast when ``amp``, optionally clip, step, log a CSV row, and
every ``checkpoint_every`` steps write a checkpoint from which the run resumes bit for bit.
Only rank 0 writes files; every rank keeps the same step counter.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..atomic import write_text
from ..errors import ConfigError
from ..weights import load_weights_into
from .checkpoint import (
    check_trajectory,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    save_model_weights,
)
from .csv_log import CsvLog, read_log
from .distributed import barrier, gather_objects, get_rank, get_world_size, is_distributed, is_main_process
from .distributed import local_rank, reduce_scalars, unwrap_model
from .sampling import EpochSampler, SeededSamples
from .schedule import StepSchedule
from .seeding import capture_rng_state, restore_rng_state, seed_everything, worker_init_fn
from .train_config import TrainConfig

__all__ = ["TrainResult", "build_optimizer", "default_step", "move_to_device", "resolve_device", "train"]

StepFn = Callable[[nn.Module, dict[str, Any]], Mapping[str, Tensor]]
CHECKPOINT_NAME, MODEL_NAME, LOG_NAME = "checkpoint.pt", "model.pt", "log.csv"
CONFIG_NAME = "train_config.json"
"""Training settings of a finished run, checked before its ``model.pt`` is reused."""


@dataclass
class TrainResult:
    """What :func:`train` did: ``steps`` optimizer steps in all, the last step's ``final_loss``,
    one ``history`` row per step (``step``, ``loss``, other scalar terms, ``lr``, ``seconds``),
    the saved weights and the wall time of this call."""

    steps: int
    final_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    model_path: Path | None = None
    seconds: float = 0.0


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → this rank's CUDA device (``LOCAL_RANK`` under torchrun) if there is one, else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() if is_distributed() else torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {device!r} but CUDA is not available; use 'cpu' or 'auto'")
    return dev


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) dict/list/tuple batch to ``device``; other values stay."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def default_step(model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Tensor]:
    """``model(batch["image"], batch["labels"])``; a bare tensor output is taken as the loss.

    When the model's ``forward`` declares a ``names`` parameter (by name, not through ``**kwargs``)
    and the batch has ``"name"``, the image ids go along: ``model(..., names=batch["name"])``
    (a list of str with the default collate), for networks whose training depends on the image,
    e.g. POLE's per-image prompts. A DDP/DataParallel wrapper is looked through.
    """
    if "name" in batch and _forward_takes_names(unwrap_model(model)):
        out = model(batch["image"], batch["labels"], names=batch["name"])
    else:
        out = model(batch["image"], batch["labels"])
    return {"loss": out} if isinstance(out, Tensor) else out


def _forward_takes_names(model: nn.Module) -> bool:
    forward = model.forward
    forward = getattr(forward, "__func__", forward)
    try:
        return _declares_names(forward)
    except TypeError:  # an unhashable callable: not cached
        return _declares_names.__wrapped__(forward)


@functools.lru_cache(maxsize=256)
def _declares_names(forward: Callable[..., Any]) -> bool:
    """Whether ``forward`` has a parameter ``names`` that can be passed by keyword (cached per function)."""
    try:
        param = inspect.signature(forward).parameters.get("names")
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over ``model.param_groups(lr)`` when the model defines it, else over every
    trainable parameter. Each group gets ``lr_mult`` (from the group, or its ``lr`` / ``config.lr``)."""
    base = unwrap_model(model)
    if hasattr(base, "param_groups") and callable(base.param_groups):
        groups = []
        for i, g in enumerate(base.param_groups(config.lr)):
            if not isinstance(g, Mapping) or "params" not in g:
                raise ConfigError(f"{type(base).__name__}.param_groups() item {i} must be a dict with 'params'")
            group = dict(g)
            group["params"] = [p for p in group["params"] if p.requires_grad]
            if "lr_mult" not in group:
                group["lr_mult"] = float(group["lr"]) / config.lr if "lr" in group else 1.0
            group["lr"] = config.lr * group["lr_mult"]
            if group["params"]:
                groups.append(group)
    else:
        groups = [{"params": [p for p in base.parameters() if p.requires_grad], "lr_mult": 1.0}]
    if not any(g["params"] for g in groups):
        raise ConfigError(f"{type(base).__name__} has no trainable parameters (all requires_grad=False)")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _scalar_terms(out: Mapping[str, Tensor]) -> dict[str, float]:
    terms = {}
    for key, value in out.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            terms[key] = float(value.detach().float())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            terms[key] = float(value)
    return terms


class _Batches:
    """Micro-batches forever, epoch after epoch, tracking ``(epoch, position)`` for checkpoints."""

    def __init__(self, dataset: Any, config: TrainConfig, collate_fn: Callable | None,
                 epoch: int, position: int, pin: bool) -> None:
        self.data, self.config, self.collate_fn = SeededSamples(dataset), config, collate_fn
        self.epoch, self.position, self.pin = epoch, position, pin
        self.per_epoch = EpochSampler.batches_per_epoch(len(dataset), config.batch_size, get_world_size())
        if self.per_epoch == 0:
            raise ConfigError(
                f"the dataset has {len(dataset)} samples, fewer than one micro-batch "
                f"(batch_size {config.batch_size} x {get_world_size()} processes); lower train.batch_size"
            )
        self._it: Iterator[Any] | None = None

    def _loader(self) -> Iterator[Any]:
        sampler = EpochSampler(len(self.data), batch_size=self.config.batch_size, seed=self.config.seed,
                               epoch=self.epoch, start_batch=self.position, rank=get_rank(),
                               world_size=get_world_size())
        # A private generator: the loader's base seed must not draw from the global torch RNG.
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch)
        kwargs: dict[str, Any] = {"collate_fn": self.collate_fn} if self.collate_fn is not None else {}
        return iter(DataLoader(self.data, batch_size=self.config.batch_size, sampler=sampler, drop_last=True,
                               num_workers=self.config.num_workers, worker_init_fn=worker_init_fn,
                               generator=gen, pin_memory=self.pin, **kwargs))

    def next(self) -> Any:
        if self.position >= self.per_epoch:
            self.epoch, self.position, self._it = self.epoch + 1, 0, None
        if self._it is None:
            self._it = self._loader()
        batch = next(self._it)
        self.position += 1
        return batch


def _finished(model: nn.Module, config: TrainConfig, out: Path, start: float) -> TrainResult:
    history = read_log(out / LOG_NAME)
    if history and history[-1]["step"] != config.steps:
        raise ConfigError(
            f"{out} holds a finished run of {history[-1]['step']} steps but the config asks for "
            f"{config.steps}; use another output folder, or pass resume=False to train again"
        )
    if (out / CONFIG_NAME).is_file():
        saved = json.loads((out / CONFIG_NAME).read_text(encoding="utf-8"))
        check_trajectory(out / MODEL_NAME, saved, json.loads(json.dumps(config.trajectory())))
    load_model_weights(out / MODEL_NAME, unwrap_model(model), source=f"finished run's weights {out / MODEL_NAME}")
    return TrainResult(config.steps, history[-1]["loss"] if history else None, history, out / MODEL_NAME,
                       time.perf_counter() - start)


def train(model: nn.Module, dataset: Any, config: TrainConfig, out_dir: str | Path, *,
          step_fn: StepFn | None = None, collate_fn: Callable[[list[Any]], Any] | None = None,
          resume: bool = True, desc: str = "train") -> TrainResult:
    """Train ``model`` on ``dataset`` for ``config.steps`` optimizer steps; files go to ``out_dir``.

    Args:
        model: the network; moved to the resolved device and trained in place (left in train mode).
        dataset: map-style; items are dicts (``image`` ``(3, H, W)``, ``labels`` ``(C,)`` ...).
        step_fn: ``step_fn(model, batch) -> {"loss": scalar, other scalar terms...}``, run under
            autocast when ``config.amp``; default :func:`default_step`, ``model(batch["image"],
            batch["labels"])`` (plus ``names=batch["name"]`` for a ``forward`` that declares ``names``).
        collate_fn: DataLoader collate function (default: torch's, which keeps strings as lists).
        resume: continue from ``out_dir/checkpoint.pt``; when ``out_dir/model.pt`` exists the run
            is complete: load it into ``model`` and return without training.

    Writes ``checkpoint.pt`` (every ``checkpoint_every`` steps, removed at the end), ``log.csv``
    and the final ``model.pt`` (state dict only), all from rank 0.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (use TrainConfig.from_dict), got {type(config).__name__}")
    start = time.perf_counter()
    out = Path(out_dir)
    step_fn = step_fn or default_step
    main = is_main_process()
    if resume and (out / MODEL_NAME).is_file():
        return _finished(model, config, out, start)

    device = resolve_device(config.device)
    model.to(device)
    model.train()
    optimizer = build_optimizer(model, config)
    schedule = StepSchedule(optimizer, base_lr=config.lr, total_steps=config.steps, schedule=config.schedule,
                            poly_power=config.poly_power, warmup_steps=config.warmup_steps,
                            warmup_ratio=config.warmup_ratio, min_lr=config.min_lr)
    use_scaler = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    step, epoch, position, seconds_before = 0, 0, 0, 0.0
    ckpt_path = out / CHECKPOINT_NAME
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        check_trajectory(ckpt_path, state["config"], config.trajectory())
        load_model_weights_from_state(model, state["model"], ckpt_path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"checkpoint {ckpt_path}: optimizer state does not fit this model's parameter "
                              f"groups ({exc}); use another output folder or resume=False") from exc
        schedule.load_state_dict(state["scheduler"])
        if use_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, epoch, position = int(state["step"]), int(state["epoch"]), int(state["position"])
        seconds_before = float(state.get("seconds", 0.0))
        rng = state["rng"]
        restore_rng_state(rng[get_rank()] if len(rng) == get_world_size() else rng[0])
        log = CsvLog(out / LOG_NAME, keep_until=step, enabled=main)
    else:
        if main and ckpt_path.exists():
            ckpt_path.unlink()  # a stale checkpoint must not be resumed into this fresh run later
        seed_everything(config.seed)
        log = CsvLog(out / LOG_NAME, keep_until=None, enabled=main)
    history = log.rows

    batches = _Batches(dataset, config, collate_fn, epoch, position, pin=device.type == "cuda")
    bar = tqdm(total=config.steps, initial=step, desc=desc, disable=None if main else True, dynamic_ncols=True)
    run_start = time.perf_counter()

    def checkpoint() -> None:
        log.flush()
        rng_states = gather_objects(capture_rng_state())
        if main:
            save_checkpoint(ckpt_path, {
                "model": unwrap_model(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(), "scaler": scaler.state_dict() if use_scaler else {},
                "step": step, "epoch": batches.epoch, "position": batches.position,
                "seconds": seconds_before + time.perf_counter() - run_start,
                "config": config.to_dict(), "rng": rng_states,
            })
        barrier()

    try:
        while step < config.steps:
            lr = schedule.apply(step)
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            for micro in range(config.grad_accum):
                batch = move_to_device(batches.next(), device)
                last = micro == config.grad_accum - 1
                sync = contextlib.nullcontext() if last or not is_distributed() or not hasattr(model, "no_sync") \
                    else model.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=config.amp):
                        out_terms = step_fn(model, batch)
                    if not isinstance(out_terms, Mapping) or "loss" not in out_terms:
                        got = list(out_terms) if isinstance(out_terms, Mapping) else type(out_terms).__name__
                        raise ConfigError(f"step_fn must return a dict with a 'loss' tensor; got {got}")
                    loss = out_terms["loss"]
                    if not torch.isfinite(loss.detach()).all():
                        raise FloatingPointError(
                            f"{desc}: loss is {float(loss.detach())} at step {step + 1} (micro-batch {micro + 1}); "
                            f"terms {_scalar_terms(out_terms)}; lower lr or check the inputs"
                        )
                    scaler.scale(loss.float() / config.grad_accum).backward()
                for key, value in _scalar_terms(out_terms).items():
                    sums[key] = sums.get(key, 0.0) + value / config.grad_accum
            if config.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            terms = reduce_scalars(sums, device)
            row = {"step": step, **terms, "lr": lr,
                   "seconds": round(seconds_before + time.perf_counter() - run_start, 3)}
            log.append(row)
            if step % config.log_every == 0 or step == config.steps:
                log.flush()
                bar.set_postfix(loss=f"{terms['loss']:.4g}", lr=f"{lr:.3g}", refresh=False)
            bar.update(1)
            if step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint()
    finally:
        bar.close()
        log.flush()

    model_path = out / MODEL_NAME
    if main:
        write_text(out / CONFIG_NAME, json.dumps(config.trajectory(), indent=2) + "\n")
        save_model_weights(model_path, unwrap_model(model))
        if ckpt_path.exists():
            ckpt_path.unlink()  # the run is complete; model.pt is what resumes/skips from now on
    barrier()
    final = history[-1]["loss"] if history else None
    if final is not None and not math.isfinite(final):
        final = None
    return TrainResult(step, final, list(history), model_path, time.perf_counter() - start)


def load_model_weights_from_state(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """Load a checkpoint's model state strictly, naming the checkpoint in the error."""
    load_weights_into(unwrap_model(model), state, strict=True,
                      source=f"checkpoint {path} (written for another model? use another output folder)")
