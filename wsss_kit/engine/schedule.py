"""Learning-rate schedules as pure functions of the optimizer step.

The engine sets each group's learning rate before every optimizer step from the step number
alone, so a resumed run gets exactly the rates of an uninterrupted one.

Conventions (those of mmcv's updaters, which the official WeakCLIP/MCTformer code used), with
``s`` the 0-based index of the step about to be taken and ``T`` the total number of steps:

- ``poly``:     ``min_lr + (lr - min_lr) * (1 - s / T) ** power``
- ``cosine``:   ``min_lr + (lr - min_lr) * (1 + cos(pi * s / T)) / 2``
- ``constant``: ``lr``
- linear warm-up over the first ``W`` steps multiplies the value above by
  ``ratio + (1 - ratio) * s / W`` (so step 0 runs at ``ratio`` times the scheduled rate).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["SCHEDULES", "StepSchedule", "lr_at"]

SCHEDULES = ("poly", "cosine", "constant")


def lr_at(step: int, *, base_lr: float, total_steps: int, schedule: str = "poly", poly_power: float = 0.9,
          warmup_steps: int = 0, warmup_ratio: float = 1e-6, min_lr: float = 0.0) -> float:
    """Learning rate of the optimizer step with 0-based index ``step`` out of ``total_steps``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    if schedule == "poly":
        lr = min_lr + (base_lr - min_lr) * (1.0 - progress) ** poly_power
    elif schedule == "cosine":
        lr = min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        lr = base_lr
    if warmup_steps > 0 and step < warmup_steps:
        lr *= warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    return lr


class StepSchedule:
    """Sets every parameter group's ``lr`` from :func:`lr_at` at a given optimizer step.

    Each group's base rate is ``base_lr * lr_mult`` (``lr_mult`` from the group, default 1), and
    ``min_lr`` is scaled by the same multiplier, so a group with ``lr_mult`` 0 stays frozen.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, base_lr: float, total_steps: int,
                 schedule: str = "poly", poly_power: float = 0.9, warmup_steps: int = 0,
                 warmup_ratio: float = 1e-6, min_lr: float = 0.0) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.kwargs: dict[str, Any] = dict(total_steps=total_steps, schedule=schedule, poly_power=poly_power,
                           warmup_steps=warmup_steps, warmup_ratio=warmup_ratio)
        self.min_lr = min_lr
        self.last_step = -1

    def factor(self, step: int) -> float:
        """Scheduled rate at ``step`` divided by ``base_lr``."""
        if self.base_lr == 0:
            return 0.0
        return lr_at(step, base_lr=1.0, min_lr=self.min_lr / self.base_lr, **self.kwargs)

    def lr(self, step: int) -> float:
        """The scheduled rate of a group with ``lr_mult`` 1."""
        return self.base_lr * self.factor(step)

    def apply(self, step: int) -> float:
        """Set every group's ``lr`` for ``step``; return the ``lr_mult`` 1 rate."""
        factor = self.factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * group.get("lr_mult", 1.0) * factor
        self.last_step = step
        return self.base_lr * factor

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "min_lr": self.min_lr, "last_step": self.last_step, **self.kwargs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
