"""The step loop every pretraining run shares: epochs over the pool, augmentation, AdamW with
warm-up + cosine, a tqdm bar with the loss, and the loss curve."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from wsss_kit.engine.schedule import lr_at

from .pool import RenderedPool, augment_batch
from .recipes import Recipe

__all__ = ["LossCurve", "adamw", "run_steps"]

_LOG_EVERY = 50
"""Steps between progress lines when tqdm's bar is off (output not a terminal)."""

StepLoss = Callable[[Tensor, int, "Tensor | None"], Tensor]
"""``(indices (B,), epoch, images float (B, 3, H, W) in [0, 1] on the device, or None when the loss
reads no pixels) -> scalar loss``."""


@dataclass
class LossCurve:
    """Per-step losses and what the record quotes of them."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def moving_average(self, first: bool, window: int = 20) -> float:
        """Mean of the first / last ``window`` steps (fewer if the run is shorter)."""
        part = self.losses[:window] if first else self.losses[-window:]
        return float(sum(part) / len(part)) if part else math.nan

    def summary(self, points: int = 50) -> dict[str, object]:
        """First/last moving averages, the seconds per step, and ``points`` evenly spaced values."""
        n = len(self.losses)
        window = max(1, min(20, n // 5 or 1))
        every = max(1, n // points)
        return {
            "window": window,
            "first_moving_average": round(self.moving_average(True, window), 5),
            "last_moving_average": round(self.moving_average(False, window), 5),
            "seconds_per_step": round(self.seconds / max(n, 1), 4),
            "every": every,
            "curve": [round(v, 4) for v in self.losses[::every]],
        }


def adamw(named: Iterable[tuple[str, nn.Parameter]], recipe: Recipe, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with no weight decay on gains, biases, embeddings' scalars and the logit scale
    (1-d tensors and ``logit_scale``), as open_clip and timm train."""
    decay, plain = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (plain if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": plain, "weight_decay": 0.0}], lr=recipe.lr, betas=betas, eps=eps)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterable[tuple[int, Tensor]]:
    """``(epoch, indices)`` forever: a fresh permutation per epoch, the last partial batch dropped
    (a pool smaller than one batch is one batch)."""
    size = min(batch_size, n)
    epoch = 0
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            yield epoch, order[start:start + size]
        epoch += 1


def run_steps(model: nn.Module, optimizer: torch.optim.Optimizer, pool: RenderedPool, recipe: Recipe,
              step_loss: StepLoss, generator: torch.Generator, device: torch.device,
              after_step: Callable[[], None] | None = None,
              probe: Callable[[int], None] | None = None, use_images: bool = True) -> LossCurve:
    """Train ``recipe.steps`` steps; every draw (order, augmentation) comes from ``generator``.

    ``after_step()`` runs after every optimizer step; ``probe(steps_done)`` every ``recipe.eval_every``
    steps (not at the end: the caller scores the final model), outside the timed training.
    ``use_images=False``: the loss reads precomputed features, so no batch is rendered or augmented.
    """
    curve = LossCurve()
    model.train()
    batches = _batches(len(pool), recipe.batch_size, generator)
    start = time.perf_counter()
    bar = tqdm(range(recipe.steps), desc=f"pretrain {recipe.model}", unit="step", disable=None)
    for step in bar:
        epoch, idx = next(batches)
        lr = lr_at(step, base_lr=recipe.lr, total_steps=recipe.steps, schedule="cosine",
                   warmup_steps=recipe.warmup, warmup_ratio=0.01)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = None
        if use_images:
            images = pool.images[idx].to(device).float().div_(255.0)
            images = augment_batch(images, generator, min_scale=recipe.min_scale, flip=recipe.flip)
        loss = step_loss(idx, epoch, images)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain {recipe.model}: the loss became {float(loss)} at step {step} "
                                     f"(lr {lr:.2e}); lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        curve.losses.append(float(loss.detach()))
        if probe is not None and recipe.eval_every and (step + 1) % recipe.eval_every == 0 and step + 1 < recipe.steps:
            paused = time.perf_counter()
            probe(step + 1)
            model.train()
            start += time.perf_counter() - paused
        bar.set_postfix(loss=f"{curve.moving_average(False, 10):.4f}", epoch=epoch, lr=f"{lr:.1e}")
        if bar.disable and (step + 1) % _LOG_EVERY == 0:  # no bar (not a terminal): a line now and then
            print(f"pretrain {recipe.model}: step {step + 1}/{recipe.steps} loss {curve.moving_average(False, 10):.4f} "
                  f"{(time.perf_counter() - start) / (step + 1):.3f} s/step", flush=True)
    curve.seconds = time.perf_counter() - start
    return curve
