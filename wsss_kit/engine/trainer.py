"""The training loop, on one device or under ``torchrun`` with DistributedDataParallel.

Per optimizer step: set the scheduled learning rate, run ``grad_accum`` micro-batches (each loss
divided by ``grad_accum``) under autocast when ``amp``, optionally clip, step, log a CSV row, and
every ``checkpoint_every`` steps write a checkpoint from which the run resumes bit for bit.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) :func:`train` joins the process
group (NCCL on CUDA, gloo on CPU), wraps the model in DDP and gives each of the ``N`` processes
``batch_size / N`` samples of every global micro-batch, so the samples of a step, and with them
the loss curve of a network without batch statistics, are those of a one-process run. Only rank 0
writes files (the others wait at a barrier); every rank keeps the same step counter, and the
checkpoint counts steps and the data position in global micro-batches, so a run resumes under
any number of processes that divides the batch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..atomic import remove_stale_temps, write_text
from ..errors import ConfigError, NumericalError
from ..interfaces import HasParamGroups
from ..progress import Progress
from ..weights import load_weights_into
from ..weights.loading import non_finite_tensors
from .checkpoint import (
    check_trajectory,
    load_model_weights,
    load_training_state,
    save_model_weights,
    save_training_state,
)
from .csv_log import CsvLog, read_log
from .distributed import (
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
from .numerics import NumericsGuard
from .sampling import EpochSampler, SeededSamples
from .schedule import StepSchedule
from .seeding import capture_rng_state, restore_rng_state, seed_everything, worker_init_fn
from .train_config import TrainConfig

__all__ = ["StepLogger", "TrainResult", "build_optimizer", "default_step", "move_to_device", "resolve_device",
           "train"]

StepFn = Callable[[nn.Module, dict[str, Any]], Mapping[str, Tensor]]
StepLogger = Callable[[int, Mapping[str, float]], None]
"""``logger(step, scalars)``, called every ``log_every`` steps and at the last step with ``loss``, the other
scalar terms, ``lr``, ``seconds`` (training time so far) and ``images_per_s`` (since the previous call).
A logger with a ``close()`` method has it called when training ends (also on an error)."""
CHECKPOINT_NAME, MODEL_NAME, LOG_NAME = "checkpoint.pt", "model.pt", "log.csv"
CONFIG_NAME = "train_config.json"
"""Training settings of a finished run, checked before its ``model.pt`` is reused."""


@dataclass
class TrainResult:
    """What :func:`train` did: ``steps`` optimizer steps in all, the last step's ``final_loss``,
    one ``history`` row per logged step (every ``log_every`` steps and the last: ``step``, ``loss``,
    other scalar terms, ``lr``, ``seconds``; the rows of ``log.csv``), the saved weights and the wall
    time of this call."""

    steps: int
    final_loss: float | None
    history: list[dict[str, float]] = field(default_factory=list)
    model_path: Path | None = None
    seconds: float = 0.0


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → this rank's CUDA device (``LOCAL_RANK`` under torchrun) if there is one, else CPU;
    ``"cuda"`` without an index is this rank's CUDA device too."""
    multi = is_distributed() or launched_by_torchrun()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() if multi else torch.cuda.current_device())
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {device!r} but CUDA is not available; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank() if multi else torch.cuda.current_device())
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
    """SGD or AdamW over ``model.param_groups(lr)`` when the model has that hook
    (:class:`~wsss_kit.interfaces.HasParamGroups`), else over every trainable parameter. Each group gets
    ``lr_mult`` (from the group, or its ``lr`` / ``config.lr``)."""
    base = unwrap_model(model)
    if isinstance(base, HasParamGroups):
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
    impl = _optimizer_impl(config, [p for g in groups for p in g["params"]])
    try:
        if config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                   foreach=impl.get("foreach"), fused=impl.get("fused"))
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, foreach=impl.get("foreach"),
                                 fused=impl.get("fused"))
    except RuntimeError as exc:  # e.g. fused on a device or dtype torch has no fused kernel for
        where = getattr(config, "_where", "train")
        raise ConfigError(f"{where}.optimizer_impl {config.optimizer_impl!r} does not run here ({exc}); "
                          f"use 'auto', 'foreach' or 'for_loop'") from exc


def _optimizer_impl(config: TrainConfig, params: Sequence[Tensor]) -> dict[str, bool]:
    """``{"fused" or "foreach": bool}``, torch's optimizer kernel for ``config.optimizer_impl`` (see
    :class:`TrainConfig`); ``{}`` (both ``None``) leaves torch's default."""
    impl = config.optimizer_impl
    if impl == "auto":
        # fused AdamW: one kernel instead of ~6 ops per parameter (4x faster on the CPU); kept to the
        # devices and dtypes torch's fused kernels cover
        fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return {"fused": True} if config.optimizer == "adamw" and fusable else {}
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]


def _scalar_terms(out: Mapping[str, Tensor]) -> dict[str, float]:
    terms = {}
    for key, value in out.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            terms[key] = float(value.detach().float())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            terms[key] = float(value)
    return terms


class _Batches:
    """This rank's part of the global micro-batches, forever, epoch after epoch, tracking
    ``(epoch, position)`` (in global micro-batches) for checkpoints."""

    def __init__(self, dataset: Any, config: TrainConfig, collate_fn: Callable | None,
                 epoch: int, position: int, pin: bool) -> None:
        self.data, self.config, self.collate_fn = SeededSamples(dataset), config, collate_fn
        self.epoch, self.position, self.pin = epoch, position, pin
        self.per_epoch = EpochSampler.batches_per_epoch(len(dataset), config.batch_size)
        if self.per_epoch == 0:
            raise ConfigError(
                f"the dataset has {len(dataset)} samples, fewer than one micro-batch "
                f"({getattr(config, '_where', 'train')}.batch_size {config.batch_size}); lower the batch size"
            )
        self._it: Iterator[Any] | None = None

    def _loader(self) -> Iterator[Any]:
        world = get_world_size()
        sampler = EpochSampler(len(self.data), batch_size=self.config.batch_size, seed=self.config.seed,
                               epoch=self.epoch, start_batch=self.position, rank=get_rank(), world_size=world)
        # A private generator: the loader's base seed must not draw from the global torch RNG.
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch)
        kwargs: dict[str, Any] = {"collate_fn": self.collate_fn} if self.collate_fn is not None else {}
        return iter(DataLoader(self.data, batch_size=self.config.batch_size // world, sampler=sampler, drop_last=True,
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
    load_model_weights(out / MODEL_NAME, unwrap_model(model), purpose="finished run's weights")
    return TrainResult(config.steps, history[-1]["loss"] if history else None, history, out / MODEL_NAME,
                       time.perf_counter() - start)


def train(model: nn.Module, dataset: Any, config: TrainConfig, out_dir: str | Path, *,
          step_fn: StepFn | None = None, collate_fn: Callable[[list[Any]], Any] | None = None,
          resume: bool = True, desc: str = "train", loggers: Sequence[StepLogger] = ()) -> TrainResult:
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
        desc: names the run in progress lines and messages (e.g. ``"train CAM"``).
        loggers: extra :data:`StepLogger` callables (e.g. a TensorBoard writer), called on rank 0
            only, after the ``log.csv`` row of the same step.

    Every ``log_every`` steps and at the last step a row goes to ``log.csv`` and to ``loggers``, and
    the progress shows the loss terms and lr: a tqdm bar when stderr is a terminal, otherwise a
    plain line on stdout (step/total, terms, lr, images/s, ETA; see :mod:`wsss_kit.progress`).

    Writes ``checkpoint.pt`` (every ``checkpoint_every`` steps, removed at the end), ``log.csv``
    and the final ``model.pt`` (state dict only), all from rank 0. Temporary files that an
    interrupted write left in ``out_dir`` are removed when training starts or resumes.

    Numerical faults stop training with :class:`NumericalError` naming the step: a loss term that
    is NaN or inf (and which term), a non-finite gradient (which parameter), a non-finite
    persistent buffer after the step (e.g. a BatchNorm ``running_var``). A checkpoint or
    ``model.pt`` holding NaN or inf is never written, so ``checkpoint.pt`` stays the last one whose
    parameters and buffers are all finite, and the run resumes from it once the cause is fixed.
    With fp16 AMP (``amp: true`` on CUDA, or ``amp: fp16``) GradScaler skips a step whose
    gradients overflow instead (training stops after
    :data:`~wsss_kit.engine.numerics.MAX_SKIPPED_STEPS` such steps in a
    row); bf16 needs no scaler.

    Under ``torchrun`` every process calls :func:`train` with the same arguments; it joins the
    process group if the caller has not, and ``step_fn`` runs inside the DistributedDataParallel
    wrapper (it receives the unwrapped model), so any step function gets synchronised gradients.
    ``config.batch_size`` is the global micro-batch (:class:`ConfigError` when the number of
    processes does not divide it); the logged terms are means over the processes. BatchNorm
    becomes SyncBatchNorm only under DDP on CUDA (``sync_batchnorm``); on CPU (gloo) each process
    normalises over its own ``batch_size / N`` samples and rank 0's running statistics are kept.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (use TrainConfig.from_dict), got {type(config).__name__}")
    start = time.perf_counter()
    out = Path(out_dir)
    step_fn = step_fn or default_step
    if resume and (out / MODEL_NAME).is_file():
        return _finished(model, config, out, start)

    device = resolve_device(config.device)
    init_distributed(device)
    main, world = is_main_process(), get_world_size()
    if config.batch_size % world:
        where = getattr(config, "_where", "train")
        raise ConfigError(
            f"{where}.batch_size {config.batch_size} (the global batch, split over the processes) is not "
            f"divisible by the number of processes, {world}; use a multiple of {world} (e.g. "
            f"{max(world, config.batch_size // world * world)}) or a number of processes that divides "
            f"{config.batch_size}"
        )
    ddp = is_distributed() and world > 1
    model.to(device)
    model.train()
    net = _prepare_batchnorm(model, config, device, ddp, main)
    optimizer = build_optimizer(net, config)
    schedule = StepSchedule(optimizer, base_lr=config.lr, total_steps=config.steps, schedule=config.schedule,
                            poly_power=config.poly_power, warmup_steps=config.warmup_steps,
                            warmup_ratio=config.warmup_ratio, min_lr=config.min_lr)
    amp_dtype = config.amp_dtype(device.type)
    use_scaler = amp_dtype == torch.float16 and device.type in ("cuda", "cpu")
    scaler = torch.amp.GradScaler(device.type if use_scaler else "cuda", enabled=use_scaler)

    step, epoch, position, seconds_before = 0, 0, 0, 0.0
    ckpt_path = out / CHECKPOINT_NAME
    if main:
        remove_stale_temps(out, recursive=False)  # left by a write that a kill interrupted
    guard = NumericsGuard(desc, unwrap_model(net), ckpt_path, scaler=scaler, ddp=ddp, main=main)
    if resume and ckpt_path.is_file():
        state = load_training_state(ckpt_path)
        check_trajectory(ckpt_path, state["config"], config.trajectory())
        bad = non_finite_tensors(state["model"], limit=5)
        if bad:
            raise NumericalError(
                f"{desc}: checkpoint {ckpt_path} (step {state.get('step')}) holds NaN or inf in "
                f"{', '.join(bad)}; it cannot be resumed (it was written before wsss_kit refused such "
                f"checkpoints): delete it to train again from step 0"
            )
        load_model_weights_from_state(net, state["model"], ckpt_path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"checkpoint {ckpt_path}: optimizer state does not fit this model's parameter "
                              f"groups ({exc}); use another output folder or resume=False") from exc
        schedule.load_state_dict(state["scheduler"])
        if use_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, epoch, position = int(state["step"]), int(state["epoch"]), int(state["position"])
        guard.kept = step
        seconds_before = float(state.get("seconds", 0.0))
        rng = state["rng"]
        # Under another number of processes the samples of each step are the same (global
        # positions); each rank then continues rank 0's RNG streams (dropout etc.).
        restore_rng_state(rng[get_rank()] if len(rng) == world else rng[0])
        saved_world = int(state.get("world_size", len(rng)))
        if main and saved_world != world:
            print(f"{desc}: resuming {ckpt_path} (written by {saved_world} process(es)) with {world}: "
                  f"step {step}, global batch {config.batch_size}, same data order")
        log = CsvLog(out / LOG_NAME, keep_until=step, enabled=main)
    else:
        if main and ckpt_path.exists():
            ckpt_path.unlink()  # a stale checkpoint must not be resumed into this fresh run later
        seed_everything(config.seed)
        log = CsvLog(out / LOG_NAME, keep_until=None, enabled=main)
    history = log.rows

    batches = _Batches(dataset, config, collate_fn, epoch, position, pin=device.type == "cuda")
    runner: nn.parallel.DistributedDataParallel | None = None
    if ddp:
        runner = nn.parallel.DistributedDataParallel(
            _StepModule(net, step_fn), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.find_unused_parameters)
    run_start = time.perf_counter()
    progress = Progress(config.steps, desc, unit="step", initial=step, every_steps=config.log_every,
                        items_per_unit=config.batch_size * config.grad_accum, enabled=main)
    last_logged = [step, run_start]  # step and time of the previous logged row (images/s between rows)

    def csv_row(step: int, row: Mapping[str, float]) -> None:
        log.append({k: v for k, v in row.items() if k != "images_per_s"})
        log.flush()

    # The one "log a step's scalars" point: every logger gets (step, row) at the same steps.
    # log.csv (every rank keeps the rows: they are the history) first, then the caller's (rank 0).
    step_loggers: list[StepLogger] = [csv_row, *(loggers if main else ())]

    def checkpoint() -> None:
        log.flush()
        rng_states = gather_objects(capture_rng_state())
        state = {"model": unwrap_model(net).state_dict(), "optimizer": optimizer.state_dict()} if main else {}
        guard.refuse(state, f"checkpoint {ckpt_path}", step)
        if main:
            save_training_state(ckpt_path, {
                **state, "scheduler": schedule.state_dict(), "scaler": scaler.state_dict() if use_scaler else {},
                "step": step, "epoch": batches.epoch, "position": batches.position,
                "seconds": seconds_before + time.perf_counter() - run_start,
                "config": config.to_dict(), "rng": rng_states, "world_size": world,
            }, check_finite=False)
        guard.kept = step
        barrier()

    try:
        while step < config.steps:
            lr = schedule.apply(step)
            optimizer.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            guard.start_step()
            for micro in range(config.grad_accum):
                batch = move_to_device(batches.next(), device)
                last = micro == config.grad_accum - 1
                sync = contextlib.nullcontext() if last or runner is None else runner.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        out_terms = runner(batch) if runner is not None else step_fn(net, batch)
                    if not isinstance(out_terms, Mapping) or "loss" not in out_terms:
                        got = list(out_terms) if isinstance(out_terms, Mapping) else type(out_terms).__name__
                        raise ConfigError(f"step_fn must return a dict with a 'loss' tensor; got {got}")
                    loss = out_terms["loss"]
                    scalars = _scalar_terms(out_terms)
                    guard.loss(loss, scalars, step + 1, micro + 1, config.grad_accum)
                    scaler.scale(loss.float() / config.grad_accum).backward()
                for key, value in scalars.items():
                    sums[key] = sums.get(key, 0.0) + value / config.grad_accum
            if use_scaler:
                scaler.unscale_(optimizer)  # gradients at their true scale, for the checks and clipping
            guard.grads(step + 1, sums)
            if config.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], config.clip_grad_norm)
            scaler.step(optimizer)  # with fp16 AMP: skipped when the gradients overflowed
            scaler.update()
            step += 1
            guard.after_step(step, sums)
            terms = reduce_scalars(sums, device)
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                images = (step - last_logged[0]) * config.batch_size * config.grad_accum
                row = {"step": step, **terms, "lr": lr, "seconds": round(seconds_before + now - run_start, 3),
                       "images_per_s": images / max(now - float(last_logged[1]), 1e-9)}
                last_logged[:] = [step, now]
                for step_logger in step_loggers:
                    step_logger(step, row)
                progress.update(1, scalars={**terms, "lr": lr})
            else:
                progress.update(1)
            if step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint()
    finally:
        progress.close(final_line=step >= config.steps)
        log.flush()
        for step_logger in step_loggers:
            close = getattr(step_logger, "close", None)
            if callable(close):
                close()

    model_path = out / MODEL_NAME
    guard.refuse(unwrap_model(net).state_dict() if main else {}, f"the trained weights {model_path}", step)
    if main:
        write_text(out / CONFIG_NAME, json.dumps(config.trajectory(), indent=2) + "\n")
        save_model_weights(model_path, unwrap_model(net))
        if ckpt_path.exists():
            ckpt_path.unlink()  # the run is complete; model.pt is what resumes/skips from now on
    barrier()
    final = history[-1]["loss"] if history else None
    if final is not None and not math.isfinite(final):
        final = None
    return TrainResult(step, final, list(history), model_path, time.perf_counter() - start)


class _StepModule(nn.Module):
    """``forward(batch) = step_fn(model, batch)``: what DDP wraps, so that any step function's
    forward pass goes through DDP (which then synchronises the gradients of the backward)."""

    def __init__(self, model: nn.Module, step_fn: StepFn) -> None:
        super().__init__()
        self.model = model
        self.step_fn = step_fn

    def forward(self, batch: dict[str, Any]) -> Mapping[str, Tensor]:
        return self.step_fn(self.model, batch)


def _prepare_batchnorm(model: nn.Module, config: TrainConfig, device: torch.device, ddp: bool,
                       main: bool) -> nn.Module:
    """``model`` with its BatchNorm layers made SyncBatchNorm when training under DDP on CUDA and
    ``config.sync_batchnorm``; otherwise ``model`` unchanged. Layers are replaced in place (the new
    layers share the old ones' parameters and buffers, and have the same state-dict keys), so the
    caller's ``model`` holds the trained weights either way."""
    batchnorm = [m for m in model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)]
    if not ddp or not any(m.training for m in batchnorm):  # none, or all frozen (eval mode)
        return model
    if device.type != "cuda":
        if main:
            warnings.warn(
                "training with DDP on CPU (gloo): BatchNorm layers are not synchronised (SyncBatchNorm needs "
                f"CUDA), so each process normalises over its own {config.batch_size // get_world_size()} samples "
                "and the loss curve differs slightly from a one-process run", stacklevel=3)
        return model
    if not config.sync_batchnorm:
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def load_model_weights_from_state(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """Load a checkpoint's model state strictly, naming the checkpoint in the error."""
    load_weights_into(unwrap_model(model), state, strict=True,
                      source=f"checkpoint {path} (written for another model? use another output folder)")
