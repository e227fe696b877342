"""Pictures of a finished run, in ``<run_dir>/pictures/``.

* ``train_grid.png`` and ``eval_grid.png``: one row per image (the first ``count`` of the split):
  image, CAM, seeds, pseudo mask, prediction, ground truth; a titled header, a class-colour legend
  (with the CAM colour scale) under the grid, and a hatched panel saying why where a picture does
  not exist (no ground truth, a stage the run skipped, no prediction on the training split), so an
  absent picture is never mistaken for an all-ignore (white) mask.
* ``class_iou_<stage>.png``: per-class IoU bars of each scored stage, training and held-out split.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..charts import class_iou_chart
from ..data.artifacts import load_cams
from ..data.image_io import read_mask
from ..interfaces import IGNORE_INDEX
from ..viz import (
    cam_overlay,
    class_legend_entries,
    colorize_mask,
    label_font,
    legend_strip,
    make_grid,
    save_png,
    stack_vertical,
    text_panel,
)
from .context import RunContext

__all__ = ["COLUMNS", "SPLIT_TITLES", "write_class_iou_charts", "write_pictures", "write_run_pictures"]

COLUMNS = ("image", "CAM", "seeds", "pseudo mask", "prediction", "ground truth")

SPLIT_TITLES = {"train": "training split (data.train)", "eval": "held-out split (data.eval)"}

NO_GROUND_TRUTH = "no ground truth"

MAX_SIDE = 320
"""Cells of the grids are at most this many pixels on their long side (a VOC or COCO image is shrunk;
masks with nearest-neighbour sampling, so their colours stay class colours)."""


COLUMN_STAGES = {"CAM": "cams", "seeds": "seeds", "pseudo mask": "pseudo_masks", "prediction": "eval"}


def _missing(ctx: RunContext, column: str, split: str) -> str:
    """Why a column's picture is absent for an item of ``split`` (the text of its panel)."""
    stage = COLUMN_STAGES.get(column, "")
    if ctx.manifest.data.get("stages", {}).get(stage, {}).get("skipped"):
        return f"no {column}: stage {stage} skipped"
    if column == "prediction" and split != "eval":
        return "not predicted: the head predicts data.eval"
    return f"no {column} file"


def write_pictures(ctx: RunContext, count: int, split: str = "eval") -> list[str]:
    """Write ``pictures/<split>_grid.png`` with one row per image (the first ``count`` images of ``split``)."""
    ds = ctx.dataset(split)
    palette = ctx.reference.palette
    rows, titles = [], []
    for i in range(min(count, len(ds))):
        sample = ds[i]
        name = sample["name"]
        image = (sample["image"].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        size = (int(image.shape[0]), int(image.shape[1]))
        scale = min(1.0, MAX_SIDE / max(size))
        cell = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        cam_file = ctx.path("cams", split, f"{name}.npz")
        smooth = Image.Resampling.BILINEAR
        row = [_shrink(image, cell, smooth),
               _shrink(cam_overlay(image, load_cams(cam_file, ctx.num_classes).amax(0).numpy()), cell, smooth)
               if cam_file.exists() else text_panel(cell, _missing(ctx, "CAM", split))]
        for folder, column in (("seeds", "seeds"), ("pseudo_masks", "pseudo mask"), ("predictions", "prediction")):
            path = ctx.path(folder, split, f"{name}.png")
            row.append(_shrink(colorize_mask(read_mask(path, ctx.num_classes, expected_size=size), palette), cell)
                       if path.exists() else text_panel(cell, _missing(ctx, column, split)))
        truth = torch.as_tensor(sample["mask"]).numpy()
        no_truth = bool((truth == IGNORE_INDEX).all())
        row.append(text_panel(cell, NO_GROUND_TRUTH) if no_truth else _shrink(colorize_mask(truth, palette), cell))
        rows.append(row)
        present = [ctx.class_names[c] for c in torch.nonzero(sample["labels"] > 0.5).flatten().tolist()]
        titles.append(f"{name}: {', '.join(present)}")
    if not rows:
        return []
    grid = make_grid(rows, row_titles=titles, col_titles=list(COLUMNS), pad=4)
    legend = legend_strip(class_legend_entries(ctx.class_names, palette), grid.width, cam_scale=True)
    picture = stack_vertical([_header(f"{SPLIT_TITLES.get(split, split)}: first {len(rows)} of {len(ds)} images",
                                      grid.width), grid, legend])
    path = ctx.path("pictures", f"{split}_grid.png")
    save_png(path, picture)
    return [str(path)]


def _shrink(picture: np.ndarray, cell: tuple[int, int], resample: Any = Image.Resampling.NEAREST) -> np.ndarray:
    """``picture (H, W, 3)`` at ``cell = (h, w)`` (unchanged when it is that size already)."""
    if picture.shape[:2] == cell:
        return picture
    return np.asarray(Image.fromarray(picture).resize((cell[1], cell[0]), resample))


def _header(text: str, width: int) -> Image.Image:
    font = label_font(16)
    strip = Image.new("RGB", (width, 28), "white")
    ImageDraw.Draw(strip).text((6, 5), text, fill=(0, 0, 0), font=font)
    return strip


def write_class_iou_charts(ctx: RunContext, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
    """``pictures/class_iou_<stage>.png`` for each ``(stage, row title, {split: scores})`` with per-class
    IoUs on at least one split (training and held-out bars side by side)."""
    names = ("background",) + ctx.class_names
    written = []
    for stage, title, splits in rows:
        series = {label: splits[split]["iou"] for split, label in (("train", "train"), ("eval", "held-out"))
                  if (splits.get(split) or {}).get("iou")}
        series = {label: values for label, values in series.items() if len(values) == len(names)}
        if not series:
            continue
        path = ctx.path("pictures", f"class_iou_{stage}.png")
        save_png(path, class_iou_chart(series, names, f"{title}: per-class IoU (%)"))
        written.append(str(path))
    return written


def write_run_pictures(ctx: RunContext, count: int, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[str]:
    """Both splits' grids (``count`` images each) and the per-class IoU charts of ``rows``
    (``(stage, row title, {split: scores})``, as the report lists them)."""
    written = write_class_iou_charts(ctx, rows)
    if count > 0:
        for split in ("train", "eval"):
            written += write_pictures(ctx, count, split)
    return written
