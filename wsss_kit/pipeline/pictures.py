"""Side-by-side pictures of a finished run: image, CAM, seeds, pseudo mask, prediction, ground truth."""

from __future__ import annotations

import numpy as np
import torch

from ..data.artifacts import load_cams
from ..data.image_io import read_mask
from ..interfaces import IGNORE_INDEX
from ..viz import cam_overlay, colorize_mask, make_grid, save_png
from .context import RunContext

COLUMNS = ("image", "CAM", "seeds", "pseudo mask", "prediction", "ground truth")


def write_pictures(ctx: RunContext, count: int, split: str = "eval") -> list[str]:
    """Write ``pictures/<split>_grid.png`` with one row per image (the first ``count`` images)."""
    ds = ctx.dataset(split)
    palette = ctx.reference.palette
    rows, titles = [], []
    for i in range(min(count, len(ds))):
        sample = ds[i]
        name = sample["name"]
        image = (sample["image"].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        size = tuple(image.shape[:2])
        cam_file = ctx.path("cams", split, f"{name}.npz")
        # A run that starts from given seeds (no cam section) has no CAM files: an empty column.
        cam = load_cams(cam_file, ctx.num_classes).amax(0) if cam_file.exists() else torch.zeros(size)
        # Stages a run skips (brought-in pseudo masks, no eval-split source) leave empty columns.
        files = [ctx.path(folder, split, f"{name}.png") for folder in ("seeds", "pseudo_masks", "predictions")]
        masks = [read_mask(f, ctx.num_classes, expected_size=size) if f.exists()
                 else np.full(size, IGNORE_INDEX, dtype=np.int64) for f in files]
        row = [image, cam_overlay(image, cam.numpy())]
        row += [colorize_mask(np.asarray(m), palette) for m in masks]
        row.append(colorize_mask(torch.as_tensor(sample["mask"]).numpy(), palette))
        rows.append(row)
        present = [ctx.class_names[c] for c in torch.nonzero(sample["labels"] > 0.5).flatten().tolist()]
        titles.append(f"{name}: {', '.join(present)}")
    path = ctx.path("pictures", f"{split}_grid.png")
    save_png(path, make_grid(rows, row_titles=titles, col_titles=list(COLUMNS)))
    return [str(path)]
