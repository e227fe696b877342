"""What a training stage logs besides ``log.csv``: TensorBoard event files, optionally Weights & Biases,
and a loss-curve picture, configured by the run file's ``logging`` section::

    logging:
      tensorboard: true      # default: on when the tensorboard package is installed
      images: 4              # training images in the logged pictures (0: scalars only)
      images_every: 0        # steps between pictures (0: about five per stage, and the last step)
      wandb: {project: wsss} # optional; needs the wandb package (default: off)

Each training stage folder (``train_cam``, ``train_refiner``, ``train_head``) gets ``tensorboard/``
(``tensorboard --logdir <run_dir>`` shows the stages side by side) and, when the stage ends,
``loss_curves.png`` drawn from its ``log.csv``. Logging never changes what is trained: the pictures
are made in eval mode without gradients, from un-augmented training images, and the model is put
back in train mode.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import yaml
from PIL import Image

from ..charts import LOSS_CURVES_NAME, write_loss_curves
from ..config import dump_config
from ..engine.loggers import (
    TENSORBOARD_DIR,
    ImageFn,
    TensorBoardLogger,
    WandbLogger,
    tensorboard_available,
    wandb_available,
)
from ..engine.seeding import capture_rng_state, restore_rng_state
from ..viz import cam_overlay, colorize_mask, make_grid, to_uint8_image
from .context import RunContext
from .schema import Bool, Choice, Int, ListOf, OneOf, Section, Spec, Str

__all__ = ["LOGGING_SCHEMA", "LossCurveWriter", "cam_pictures", "head_pictures", "logging_problems",
           "stage_loggers", "tensorboard_enabled"]

_WANDB = Section({"project": Str(), "entity": Str(), "name": Str(), "group": Str(), "tags": ListOf(Str()),
                  "mode": Choice(("online", "offline", "disabled")), "dir": Str()})

LOGGING_SCHEMA: tuple[tuple[str, Spec, bool], ...] = (
    ("logging.tensorboard", Bool(), False),
    ("logging.images", Int(0), False),
    ("logging.images_every", Int(0), False),
    ("logging.wandb", OneOf((Bool(), _WANDB)), False),
)
"""The ``logging`` section's keys (part of the run file's schema; not part of any stage's fingerprint:
logging does not change a stage's outputs)."""

DEFAULT_IMAGES = 4
PICTURE_SIDE = 256
"""Images in the logged pictures are at most this many pixels on their long side."""
PICTURES_PER_STAGE = 5


def tensorboard_enabled(cfg: Mapping[str, Any]) -> bool:
    """``logging.tensorboard`` when given, else whether tensorboard is installed."""
    value = (cfg.get("logging") or {}).get("tensorboard")
    return tensorboard_available() if value is None else bool(value)


def logging_problems(cfg: Mapping[str, Any]) -> list[str]:
    """What the ``logging`` section asks for that this environment cannot do (a missing package)."""
    section = cfg.get("logging") or {}
    if not isinstance(section, Mapping):
        return []  # the schema reports a non-mapping
    problems = []
    if section.get("tensorboard") is True and not tensorboard_available():
        problems.append("logging.tensorboard is true but the tensorboard package is not installed: "
                        "pip install tensorboard, or set logging.tensorboard: false")
    if section.get("wandb") not in (None, False) and not wandb_available():
        problems.append("logging.wandb is set but the wandb package is not installed: pip install wandb, "
                        "or remove logging.wandb")
    return problems


class LossCurveWriter:
    """A step logger that does nothing per step and, when training ends (``close()``, also after an
    error), draws ``log.csv`` into ``loss_curves.png`` beside it."""

    def __init__(self, log_csv: str | Path, title: str) -> None:
        self.log_csv, self.title = Path(log_csv), title

    def __call__(self, step: int, scalars: Mapping[str, float]) -> None:
        pass

    def close(self) -> None:
        # close() also runs while an error propagates: a picture that cannot be drawn (a full disk)
        # must not hide that error, nor fail a finished training
        try:
            write_loss_curves(self.log_csv, title=self.title)
        except (OSError, ValueError) as exc:
            warnings.warn(f"{self.log_csv.with_name(LOSS_CURVES_NAME)} was not drawn: {exc}", stacklevel=2)


def stage_loggers(ctx: RunContext, stage: str, total_steps: int, images: ImageFn | None = None) -> list[Any]:
    """The step loggers of training stage ``stage`` (its folder is ``ctx.path(stage)``): the loss-curve
    writer, TensorBoard unless turned off, W&B when configured. ``images`` makes the pictures."""
    section = dict(ctx.get("logging", {}) or {})
    if not int(section.get("images", DEFAULT_IMAGES)):
        images = None
    every = int(section.get("images_every", 0)) or max(1, total_steps // PICTURES_PER_STAGE)
    loggers: list[Any] = [LossCurveWriter(ctx.path(stage, "log.csv"), f"{stage}: training loss")]
    if tensorboard_enabled(ctx.cfg):
        # the run's config, indented: TensorBoard's text tab renders Markdown, and this keeps the YAML verbatim
        config = "".join(f"    {line}\n" for line in dump_config(ctx.cfg).splitlines())
        loggers.append(TensorBoardLogger(ctx.path(stage, TENSORBOARD_DIR), images=images, image_every=every,
                                         total_steps=total_steps, text={"config": config}))
    wandb = section.get("wandb")
    if wandb is not None and wandb is not False:  # true, or a mapping of wandb.init keywords
        init = {"project": "wsss_kit", **(wandb if isinstance(wandb, Mapping) else {})}
        init.setdefault("name", f"{ctx.run_dir.name}/{stage}")
        init.setdefault("group", ctx.run_dir.name)
        init.setdefault("config", yaml.safe_load(dump_config(ctx.cfg)))  # plain data: what wandb.init stores
        loggers.append(WandbLogger(init, images=images, image_every=every, total_steps=total_steps))
    return loggers


def _picture_samples(ctx: RunContext) -> Callable[[], list[Mapping[str, Any]]]:
    """The training images of the pictures, read when first drawn (never, when nothing logs pictures)."""
    cache: list[Mapping[str, Any]] = []

    def samples() -> list[Mapping[str, Any]]:
        if not cache:
            count = int((ctx.get("logging", {}) or {}).get("images", DEFAULT_IMAGES))
            ds = ctx.dataset("train")  # un-augmented: the same images at every logged step
            cache.extend(_small(ds[i]) for i in range(min(count, len(ds))))
        return cache
    return samples


def _small(sample: Mapping[str, Any]) -> dict[str, Any]:
    """``sample`` with its image shrunk to at most :data:`PICTURE_SIDE` pixels on the long side (the
    pictures stay small and cheap for VOC/COCO-size images) and its original ``size`` ``(H, W)``."""
    image = sample["image"]
    h, w = int(image.shape[-2]), int(image.shape[-1])
    scale = PICTURE_SIDE / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                                                antialias=True)[0].clamp(0, 1)
    return {**sample, "image": image, "size": (h, w)}


def _eval_pictures(model: torch.nn.Module, tag: str, draw: Callable[[], np.ndarray]) -> ImageFn:
    """``{tag: draw()}`` run in eval mode without gradients; the model's mode and every global RNG state
    are restored after, so a plugin whose inference draws random numbers cannot change the training."""
    def pictures() -> Mapping[str, np.ndarray]:
        was_training, rng = model.training, capture_rng_state()
        model.eval()
        try:
            with torch.no_grad():
                return {tag: draw()}
        finally:
            model.train(was_training)
            restore_rng_state(rng)
    return pictures


def _device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def cam_pictures(ctx: RunContext, model: torch.nn.Module) -> ImageFn:
    """Training images beside the CAM of their classes (the max over the present classes), tagged
    ``cam_overlays``, as the CAM network sees them now (single scale, no flip)."""
    samples = _picture_samples(ctx)

    def draw() -> np.ndarray:
        rows, titles = [], []
        for s in samples():
            image = s["image"][None].to(_device(model))
            labels = torch.as_tensor(s["labels"])[None].to(image.device)
            cams = model.cams(image, labels, scales=(1.0,), flip=False)  # type: ignore[operator]
            rows.append([to_uint8_image(s["image"]), cam_overlay(s["image"], cams[0].amax(0).float().cpu())])
            titles.append(_title(ctx, s))
        return np.asarray(make_grid(rows, row_titles=titles, col_titles=["image", "CAM"]))

    return _eval_pictures(model, "cam_overlays", draw)


def head_pictures(ctx: RunContext, model: torch.nn.Module) -> ImageFn:
    """Training images, the head's prediction and the pseudo mask it learns from, tagged ``predictions``."""
    samples = _picture_samples(ctx)
    palette = ctx.reference.palette
    targets = ctx.path("pseudo_masks", "train")

    def draw() -> np.ndarray:
        from ..data.image_io import read_mask

        rows, titles = [], []
        for s in samples():
            image = s["image"][None].to(_device(model))
            logits = model(image)
            if logits.shape[-2:] != image.shape[-2:]:
                logits = torch.nn.functional.interpolate(logits.float(), size=image.shape[-2:], mode="bilinear",
                                                         align_corners=False)
            row = [to_uint8_image(s["image"]), colorize_mask(logits.argmax(1)[0].cpu(), palette)]
            target = targets / f"{s['name']}.png"
            if target.is_file():
                mask = read_mask(target, ctx.num_classes, expected_size=s["size"]).astype(np.uint8)
                mask = np.asarray(Image.fromarray(mask).resize((image.shape[-1], image.shape[-2]),
                                                              Image.Resampling.NEAREST))
                row.append(colorize_mask(mask, palette))
            rows.append(row)
            titles.append(_title(ctx, s))
        return np.asarray(make_grid(rows, row_titles=titles, col_titles=["image", "prediction", "pseudo mask"]))

    return _eval_pictures(model, "predictions", draw)


def _title(ctx: RunContext, sample: Mapping[str, Any]) -> str:
    present: Sequence[int] = torch.nonzero(torch.as_tensor(sample["labels"]) > 0.5).flatten().tolist()
    return f"{sample['name']}: {', '.join(ctx.class_names[c] for c in present)}"
