"""mIoU evaluation over many VOC-sized masks (1,449 = VOC 2012 val at 375 × 500, 21 classes):
the toolkit's confusion matrix against the official evaluation's way of counting.

Variants (one call = every mask once):

* ``wsss_kit``: :class:`wsss_kit.metrics.ConfusionMatrix` over masks already in memory (on the
  measuring device), as the eval stage accumulates predictions it has just made;
* ``wsss_kit_png``: what the eval stage's scorer (``wsss_kit.pipeline.evaluation.score_mask_files``)
  does per item: read the prediction PNG (``read_mask_artifact``) and the ground-truth PNG, map
  ignore predictions to background, update the matrix;
* ``official_like_png``: MCTformer's ``evaluation.py`` (``do_python_eval``, xulianuwa/MCTformer)
  counts differently: per image and per class three masked numpy sums (predicted, true, true
  positive); this is that counting in one process (the official spreads the images over 8
  processes) on the same PNGs.

The masks: :data:`DISTINCT` different (ground truth, prediction) pairs of rectangles and discs with
an ignore border, cycled to the requested number (the counting cost does not depend on the
content; the PNGs are read back from the page cache, as on a second evaluation).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image

from .harness import Timed, interleave
from .registry import Context

DISTINCT = 8
"""Different mask pairs generated (the rest repeat them)."""

IGNORE = 255


def synthetic_masks(height: int, width: int, classes: int, count: int = DISTINCT,
                    seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` pairs of ``uint8 (height, width)`` masks: ground truth (background 0, a few objects
    of classes ``1..classes-1``, a 5-pixel ignore band around the first object) and a prediction
    (the objects shifted and one class confused, values in ``[0, classes)``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pairs = []
    for _ in range(count):
        gt = np.zeros((height, width), np.uint8)
        pred = np.zeros((height, width), np.uint8)
        for j in range(int(rng.integers(1, 4))):
            c = int(rng.integers(1, classes)) if classes > 1 else 0
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(min(height, width) / 8, min(height, width) / 3)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            if j == 0:
                gt[(d2 >= r * r) & (d2 < (r + 5) ** 2)] = IGNORE
            gt[d2 < r * r] = c
            dy, dx = rng.integers(-int(r / 4), int(r / 4) + 1, 2)
            shifted = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 < r * r
            pred[shifted] = c if rng.random() < 0.8 else int(rng.integers(0, classes))
        pairs.append((gt, pred))
    return pairs


def official_like_counts(gt: np.ndarray, pred: np.ndarray, classes: int,
                         counts: np.ndarray) -> None:
    """Add to ``counts`` ``int64 (3, classes)`` (predicted, true, true positive per class) the pixels
    of one image, counted per class with masked sums (``do_python_eval``'s counting)."""
    valid = gt < IGNORE
    hit = (pred == gt) & valid
    for c in range(classes):
        counts[0, c] += np.sum((pred == c) & valid)
        counts[1, c] += np.sum((gt == c) & valid)
        counts[2, c] += np.sum((gt == c) & hit)


def miou_of_counts(counts: np.ndarray) -> float:
    """Mean IoU of ``(3, K)`` counts (predicted, true, true positive) over the classes seen."""
    p, t, tp = counts.astype(np.float64)
    union = p + t - tp
    seen = union > 0
    return float((tp[seen] / union[seen]).mean())


def measure_miou_eval(point: Mapping[str, Any], ctx: Context) -> Timed:
    """One point: ``masks`` masks of ``height`` × ``width`` with ``classes`` classes (background
    included), every variant of the module docstring; ``extra`` has each variant's mIoU and the
    largest difference between them (0: they count the same pixels)."""
    from wsss_kit.data.artifacts import read_mask_artifact
    from wsss_kit.metrics import ConfusionMatrix

    n, h, w, k = int(point["masks"]), int(point["height"]), int(point["width"]), int(point["classes"])
    pairs = synthetic_masks(h, w, k)
    on_device = [(torch.from_numpy(g).to(ctx.device), torch.from_numpy(p).to(ctx.device)) for g, p in pairs]
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wsss_speed_miou_") as tmp:
        folder = Path(tmp)
        for i, (g, p) in enumerate(pairs):
            Image.fromarray(g).save(folder / f"gt_{i}.png")
            Image.fromarray(p).save(folder / f"pred_{i}.png")

        def in_memory() -> None:
            cm = ConfusionMatrix(k, device=ctx.device)
            for i in range(n):
                g, p = on_device[i % DISTINCT]
                cm.update(p[None], g[None])
            result["wsss_kit"] = float(cm.compute()["miou"])

        def scorer_png() -> None:
            cm = ConfusionMatrix(k)
            for i in range(n):
                gt = torch.from_numpy(np.array(Image.open(folder / f"gt_{i % DISTINCT}.png"))).long()
                pred = torch.as_tensor(read_mask_artifact(folder / f"pred_{i % DISTINCT}.png", k - 1,
                                                          expected_size=(h, w)), dtype=torch.int64)
                pred = torch.where(pred == IGNORE, torch.zeros_like(pred), pred)
                cm.update(pred[None], gt[None])
            result["wsss_kit_png"] = float(cm.compute()["miou"])

        def official_png() -> None:
            counts = np.zeros((3, k), np.int64)
            for i in range(n):
                pred = np.array(Image.open(folder / f"pred_{i % DISTINCT}.png"))
                gt = np.array(Image.open(folder / f"gt_{i % DISTINCT}.png"))
                official_like_counts(gt, pred, k, counts)
            result["official_like_png"] = miou_of_counts(counts)

        variants = {"wsss_kit": in_memory, "wsss_kit_png": scorer_png, "official_like_png": official_png}
        timed = interleave(variants, ctx.rounds, ctx.warmup, ctx.device, {v: n for v in variants})
    timed.official = ctx.official_label(
        "mctformer", "MCTformer evaluation.py's per-class masked numpy sums, one process, same PNGs", runs=False)
    timed.extra = {"miou": {v: round(m, 6) for v, m in result.items()},
                   "max_miou_difference": max(result.values()) - min(result.values()),
                   "distinct_mask_pairs": DISTINCT}
    return timed
