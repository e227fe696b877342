"""Finite-value checks of training: loss terms, gradients, parameters and buffers.

Training stops with :class:`~wsss_kit.errors.NumericalError` at the first NaN or inf, naming the
step and the tensor, and never writes a checkpoint or final weights that hold one. The checks
that run every step are cheap: the gradients are checked in one fused multi-tensor pass (the
kernel GradScaler uses), the persistent floating-point buffers (BatchNorm running statistics)
with one reduction each, and both with a single device synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import NumericalError
from ..weights.loading import non_finite_tensors
from .distributed import any_rank, gather_objects

__all__ = [
    "MAX_SKIPPED_STEPS",
    "NumericsGuard",
    "all_finite",
    "describe_state",
    "grads_finite",
    "non_finite_grads",
    "non_finite_terms",
    "persistent_float_buffers",
]

MAX_SKIPPED_STEPS = 25
"""With fp16 AMP, GradScaler skips a step whose gradients overflow and halves its scale; this
many skipped steps in a row (the scale divided by 2**25) means the values are non-finite at any
scale, and training stops."""


def all_finite(tensors: Iterable[Tensor]) -> bool:
    """Whether every floating-point tensor holds only finite values (read only; one
    synchronisation per device)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point() and t.numel()]
    if not flags:
        return True
    if len({f.device for f in flags}) > 1:
        return all(bool(f) for f in flags)
    return bool(torch.stack(flags).all())


def grads_finite(params: Iterable[Tensor]) -> bool:
    """Whether every gradient of ``params`` is finite: grouped by device and dtype, one fused
    ``_amp_foreach_non_finite_check_and_unscale_`` pass each (scale 1, so gradients keep their
    exact values), then one synchronisation; falls back to :func:`all_finite`."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for p in params:
        g = p.grad
        if g is not None and g.is_floating_point() and g.numel() and g.layout == torch.strided:
            groups.setdefault((g.device, g.dtype), []).append(g)
    if not groups:
        return True
    try:
        found: dict[torch.device, Tensor] = {}
        for (device, _), grads in groups.items():
            if device not in found:
                found[device] = torch.zeros(1, device=device)
            one = torch.ones(1, device=device)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found[device], one)
        return not any(bool(f.item()) for f in found.values())
    except (RuntimeError, AttributeError, NotImplementedError):  # e.g. a device without the kernel
        return all_finite(g for grads in groups.values() for g in grads)


def persistent_float_buffers(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(state-dict key, buffer)`` of every floating-point buffer saved in the state dict
    (BatchNorm ``running_mean``/``running_var`` ...); non-persistent buffers (e.g. an attention
    mask that holds ``-inf`` on purpose) are left out."""
    out = []
    for prefix, module in model.named_modules():
        skip: set[str] = getattr(module, "_non_persistent_buffers_set", set())
        for name, buf in module._buffers.items():
            if buf is not None and name not in skip and buf.is_floating_point():
                out.append((f"{prefix}.{name}" if prefix else name, buf))
    return out


def non_finite_grads(named_params: Iterable[tuple[str, Tensor]], limit: int = 5) -> list[str]:
    """Descriptions of the parameters whose gradient holds NaN or inf (at most ``limit``)."""
    grads = {name: p.grad for name, p in named_params if p.grad is not None}
    return non_finite_tensors(grads, limit=limit)


def non_finite_terms(terms: Mapping[str, float], loss: Tensor | None = None) -> list[str]:
    """``"name=value"`` for the scalar loss terms that are NaN or inf (``loss`` is named even when
    it is a tensor the scalar terms did not capture)."""
    bad = [f"{k}={v}" for k, v in terms.items() if not math.isfinite(v)]
    if not bad and loss is not None:
        bad = [f"loss={float(loss.detach().float().sum())}"]
    return bad


def describe_state(model: nn.Module, limit: int = 5) -> list[str]:
    """Descriptions of the parameters and persistent buffers of ``model`` that hold NaN or inf."""
    return non_finite_tensors(_state_tensors(model), limit=limit)


def _state_tensors(model: nn.Module) -> dict[str, Any]:
    state: dict[str, Any] = {name: p.detach() for name, p in model.named_parameters()}
    state.update(persistent_float_buffers(model))
    return state


class NumericsGuard:
    """The finite checks of one :func:`~wsss_kit.engine.train` call, in the order a step runs them.

    ``loss`` after each micro-batch's forward, ``grads`` after the backward passes (before
    clipping and the optimizer step), ``after_step`` once the step is taken, ``refuse`` before
    a checkpoint or the final weights are written. Each raises :class:`NumericalError` naming
    ``desc``, the step and the tensor, and saying which checkpoint is kept.

    Under DDP every process raises at the same point: gradients are averaged, so all see the
    same ones; a loss or buffer that is non-finite on one process only is found by one small
    collective after the step (``any_rank``), and its message is sent to all.
    """

    def __init__(self, desc: str, model: nn.Module, ckpt_path: Any, *, scaler: Any, ddp: bool,
                 main: bool) -> None:
        self.desc, self.model, self.ckpt_path = desc, model, ckpt_path
        self.scaler, self.ddp, self.main = scaler, ddp, main
        self.named_params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.kept: int | None = None  # step of the checkpoint on disk (all its values finite)
        self.skipped: list[int] = []  # steps in a row that fp16 AMP skipped
        self.loss_fault: str | None = None
        self.finite = True

    @property
    def scaling(self) -> bool:
        return bool(self.scaler.is_enabled())

    def stop(self, what: str, hint: str) -> NumericalError:
        if self.kept is None:
            note = "no checkpoint was written yet, so a new run starts from step 0"
        else:
            note = (f"{self.ckpt_path} (step {self.kept}) is the last checkpoint and holds only finite values: "
                    f"fix the cause and run again to resume from it")
        return NumericalError(f"{self.desc}: {what}; {hint}; training stopped, {note}")

    def _hint(self) -> str:
        now = describe_state(self.model)
        note = f" (parameters and buffers now non-finite: {', '.join(now)})" if now else ""
        return f"lower lr, enable clip_grad_norm, or check this step's inputs{note}"

    def start_step(self) -> None:
        self.loss_fault, self.finite = None, True

    def loss(self, loss: Tensor, scalars: Mapping[str, float], step: int, micro: int, grad_accum: int) -> None:
        """Check one micro-batch's loss of step ``step`` (1-based); outside DDP and fp16 AMP a
        non-finite one stops at once, otherwise at :meth:`grads` / :meth:`after_step`."""
        if self.loss_fault is not None or bool(torch.isfinite(loss.detach()).all()):
            return
        self.loss_fault = (f"non-finite loss at step {step} (micro-batch {micro} of {grad_accum}): "
                           f"{', '.join(non_finite_terms(scalars, loss))}; all terms {dict(scalars)}")
        if not self.ddp and not self.scaling:
            raise self.stop(self.loss_fault, self._hint())

    def grads(self, step: int, terms: Mapping[str, float]) -> None:
        """Check the gradients (already unscaled under fp16 AMP). Without a scaler a non-finite
        one stops training; with one, GradScaler skips the step (see :meth:`after_step`)."""
        self.finite = grads_finite(p for _, p in self.named_params)
        if not self.finite and not self.scaling:
            raise self.stop(self.loss_fault or self._grad_fault(step, terms), self._hint())

    def _grad_fault(self, step: int, terms: Mapping[str, float]) -> str:
        bad = non_finite_grads(self.named_params)
        return (f"non-finite gradient at step {step}: parameter {', '.join(bad) or '(none found)'}; "
                f"the loss terms were {dict(terms)}")

    def after_step(self, step: int, terms: Mapping[str, float]) -> None:
        """After optimizer step ``step``: count fp16 AMP's skipped steps, then check a loss that was
        non-finite with finite gradients and the persistent buffers, on every process."""
        if self.scaling:
            self.skipped = [] if self.finite else self.skipped + [step]
            if len(self.skipped) >= MAX_SKIPPED_STEPS:
                raise self.stop(
                    f"fp16 AMP skipped {len(self.skipped)} steps in a row ({self.skipped[0]} to {step}) for "
                    f"non-finite gradients and lowered its scale to {self.scaler.get_scale():g}; at step {step}: "
                    f"{self.loss_fault or self._grad_fault(step, terms)}", self._hint())
        fault = self.loss_fault if self.loss_fault is not None and self.finite else None
        buffers = persistent_float_buffers(self.model)
        if fault is None and not all_finite(b for _, b in buffers):
            fault = (f"non-finite buffer after step {step}: {', '.join(non_finite_tensors(dict(buffers), limit=5))}"
                     f" (e.g. BatchNorm running statistics overflow on inputs of huge values)")
        hint = "check this step's inputs, lower lr or enable clip_grad_norm"
        if self.ddp and any_rank(fault is not None):
            faults = [f"process {r}: {f}" for r, f in enumerate(gather_objects(fault)) if f is not None]
            raise self.stop("; ".join(faults), hint)
        if fault is not None:
            raise self.stop(fault, hint)

    def refuse(self, tensors: Any, writing: str, step: int) -> None:
        """On every process: stop if rank 0's ``tensors`` (what it is about to write) hold NaN or inf."""
        bad = non_finite_tensors(tensors, limit=5) if self.main else []
        if any_rank(bool(bad)):
            raise self.stop(f"refusing to write {writing} after step {step}: NaN or inf in "
                            f"{', '.join(bad) or 'the state of rank 0'}", "lower lr or enable clip_grad_norm")
