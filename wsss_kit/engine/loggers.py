"""Step loggers for :func:`wsss_kit.engine.train` (its ``loggers=`` argument): TensorBoard event files
and a thin Weights & Biases adapter.

A step logger is called ``logger(step, scalars)`` on rank 0 every ``log_every`` steps and at the last
step, with ``loss``, the other loss terms, ``lr``, ``seconds`` and ``images_per_s``; its ``close()``
runs when training ends (also after an error). Both loggers here import their package only when
first called, so building one costs nothing on a rank or in a run that never logs.

Scalar tags (TensorBoard and W&B alike): each loss term ``t`` as ``loss/t`` (the total, ``loss``, as
``loss/total``), ``train/lr`` and ``train/images_per_s``. Pictures (``images=`` a function returning
``{tag: uint8 (H, W, 3)}``, e.g. CAM overlays) are logged as ``images/<tag>`` every ``image_every``
steps and at the last step.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ConfigError

__all__ = ["TENSORBOARD_DIR", "ImageFn", "TensorBoardLogger", "WandbLogger", "scalar_tags", "tensorboard_available",
           "wandb_available"]

TENSORBOARD_DIR = "tensorboard"
"""The folder of a training stage that holds its TensorBoard event files."""

ImageFn = Callable[[], Mapping[str, np.ndarray]]
"""``images() -> {tag: uint8 (H, W, 3)}``: pictures of the model as it is now (run on rank 0)."""

_NOT_LOGGED = ("step", "seconds")  # the step is the x axis; the wall clock is in every event already


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (which torch's SummaryWriter needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def wandb_available() -> bool:
    """Whether the ``wandb`` package is installed."""
    return importlib.util.find_spec("wandb") is not None


def scalar_tags(scalars: Mapping[str, float]) -> dict[str, float]:
    """A logged row → ``{tag: value}``: loss terms under ``loss/`` (``loss`` itself as
    ``loss/total``), ``lr`` and ``images_per_s`` under ``train/``; ``step`` and ``seconds`` dropped."""
    tags = {}
    for key, value in scalars.items():
        if key in _NOT_LOGGED:
            continue
        if key in ("lr", "images_per_s"):
            tags[f"train/{key}"] = float(value)
        else:
            tags["loss/total" if key == "loss" else f"loss/{key}"] = float(value)
    return tags


class _ImageSchedule:
    """Pictures at the first logged step at or after each multiple of ``every``, and at ``total``."""

    def __init__(self, images: ImageFn | None, every: int, total: int | None) -> None:
        if every < 0:
            raise ConfigError(f"image_every must be an integer >= 0 (0: only at the last step); got {every}")
        self.images, self.every, self.total = images, every, total
        self.next_due: int | None = None

    def due(self, step: int) -> bool:
        if self.images is None:
            return False
        if self.next_due is None:  # the first call (also after a resume): the next multiple from here
            self.next_due = (step // self.every) * self.every if self.every else None
        if self.total is not None and step >= self.total:
            return True
        if self.next_due is not None and step >= max(self.next_due, 1):
            self.next_due = (step // self.every + 1) * self.every
            return True
        return False


class TensorBoardLogger:
    """Writes a training run's scalars (and pictures) as TensorBoard event files in ``log_dir``.

    Args:
        log_dir: the folder for the event files (created on the first call).
        images: optional :data:`ImageFn`, called when pictures are due.
        image_every: steps between pictures (0: only at the last step).
        total_steps: the run's last step (pictures are always logged there).
        text: ``{tag: Markdown text}`` written once when the writer opens (e.g. the run's config),
            under ``text/<tag>``.

    The writer opens on the first call with ``purge_step`` set to that step, so after a resume from a
    checkpoint TensorBoard drops the events an interrupted run logged past it (no step twice).

    Raises:
        ConfigError: (on the first call) the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, images: ImageFn | None = None, image_every: int = 0,
                 total_steps: int | None = None, text: Mapping[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self._schedule = _ImageSchedule(images, image_every, total_steps)
        self._text = dict(text or {})
        self._writer: Any = None

    def _open(self, step: int) -> Any:
        if not tensorboard_available():
            raise ConfigError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                              "(or turn it off with logging.tensorboard: false)")
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.log_dir), purge_step=step)

    def __call__(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            self._writer = self._open(step)
            for tag, text in self._text.items():
                self._writer.add_text(f"text/{tag}", text, step)
        for tag, value in scalar_tags(scalars).items():
            self._writer.add_scalar(tag, value, step)
        if self._schedule.due(step):
            assert self._schedule.images is not None  # due() is False without an image function
            for tag, picture in self._schedule.images().items():
                self._writer.add_image(f"images/{tag}", np.asarray(picture), step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbLogger:
    """Sends the same scalars (and pictures) to Weights & Biases: ``wandb.init(**init)`` on the first
    call, ``run.log({tag: value}, step=step)`` per call, ``run.finish()`` at the end.

    Args:
        init: keywords of ``wandb.init`` (``project``, ``name``, ``config``, ``dir``, ``mode`` ...).
        images, image_every, total_steps: as for :class:`TensorBoardLogger`.
        module: the ``wandb`` module to use (default: imported on the first call; tests pass a fake).

    Raises:
        ConfigError: (on the first call) ``wandb`` is not installed.
    """

    def __init__(self, init: Mapping[str, Any] | None = None, *, images: ImageFn | None = None, image_every: int = 0,
                 total_steps: int | None = None, module: Any = None) -> None:
        self.init = dict(init or {})
        self._schedule = _ImageSchedule(images, image_every, total_steps)
        self._module: Any = module
        self._run: Any = None

    def __call__(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._run is None:
            if self._module is None:
                if not wandb_available():
                    raise ConfigError("logging.wandb needs the wandb package: pip install wandb")
                self._module = importlib.import_module("wandb")
            self._run = self._module.init(**self.init)
        data: dict[str, Any] = dict(scalar_tags(scalars))
        if self._schedule.due(step):
            assert self._schedule.images is not None
            data.update({f"images/{tag}": self._module.Image(np.asarray(picture))
                         for tag, picture in self._schedule.images().items()})
        self._run.log(data, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
