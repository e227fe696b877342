"""Background-threshold sweep for CAM evaluation (MCTformer/IRN style: 0.00 to 0.59).

For every threshold ``t`` the seed of a pixel is ``argmax([t, cam_1, ..., cam_C])``: background
where no CAM exceeds ``t``, else the class with the highest CAM (the rule of
:func:`wsss_kit.cams_to_seeds`). All thresholds are evaluated in one pass per batch: with
``m`` the pixel's highest CAM and ``c`` its arg-max class, the pixel predicts ``c`` for every
threshold below ``m`` and background for the others. So it is enough to histogram pixels by
(number of thresholds below ``m``, ground truth, ``c``) and take cumulative sums over the
threshold axis: ``O(pixels + T·K²)`` per batch instead of ``O(T·pixels)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..cam_ops import class_argmax
from ..shapes import check_shape
from .confusion import IGNORE_INDEX, ConfusionMatrix, all_reduce_sum, iou_from_confusion

__all__ = ["ThresholdSweep", "default_thresholds"]


def default_thresholds() -> torch.Tensor:
    """0.00, 0.01, ..., 0.59 (float64, exact decimals) — the sweep of MCTformer's evaluation."""
    return torch.arange(60, dtype=torch.float64) / 100


class ThresholdSweep:
    """Accumulates one confusion matrix per background threshold.

    Example::

        sweep = ThresholdSweep(num_classes=20)
        for batch in loader:
            sweep.update(cams, batch["mask"])
        sweep.all_reduce()
        t, miou = sweep.best()
    """

    def __init__(
        self,
        num_classes: int,
        thresholds: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        """
        Args:
            num_classes: ``C``, foreground classes only (matrices are ``(C+1, C+1)``).
            thresholds: background thresholds; default :func:`default_thresholds`. They are
                sorted ascending and duplicates removed.
            ignore_index: ground-truth value not counted.
        """
        if int(num_classes) < 1:
            raise ValueError(f"num_classes (foreground classes) must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        th = default_thresholds() if thresholds is None else torch.as_tensor(thresholds, dtype=torch.float64)
        th = th.reshape(-1).cpu()
        if th.numel() == 0:
            raise ValueError("thresholds must not be empty")
        if not bool(torch.isfinite(th).all()):
            raise ValueError(f"thresholds must be finite, got {th.tolist()}")
        self.thresholds = torch.unique(th)  # sorted ascending
        self._local: torch.Tensor | None = None
        self._remote: torch.Tensor | None = None

    @property
    def num_thresholds(self) -> int:
        return int(self.thresholds.numel())

    def reset(self) -> None:
        self._local = None
        self._remote = None

    def update(self, cams: torch.Tensor, target: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            cams: ``(B, C, H, W)`` in [0, 1] (zero for absent classes).
            target: ground-truth masks ``(B, H, W)`` int, 0..C or ``ignore_index``.
            labels: optional ``(B, C)`` multi-hot; when given, absent classes' CAMs are zeroed.
        """
        check_shape(cams, "B C H W", "cams")
        if not cams.is_floating_point():
            raise ValueError(f"cams must be floating point, got {cams.dtype}")
        b, c, h, w = cams.shape
        if c != self.num_classes:
            raise ValueError(f"cams have {c} classes but the sweep was built for num_classes={self.num_classes}")
        target = torch.as_tensor(target)
        if tuple(target.shape) != (b, h, w):
            raise ValueError(f"target has shape {tuple(target.shape)}, expected {(b, h, w)} to match cams")
        if target.is_floating_point():
            raise ValueError(f"target must hold integer class indices, got {target.dtype}")
        target = target.to(cams.device).long()
        if labels is not None:
            labels = torch.as_tensor(labels).to(cams.device)
            if tuple(labels.shape) != (b, c):
                raise ValueError(f"labels have shape {tuple(labels.shape)}, expected {(b, c)}")
            cams = cams * (labels[:, :, None, None] > 0).to(cams.dtype)

        k = self.num_classes + 1
        t = self.num_thresholds
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= k))
        if bool(bad.any()):
            vals = torch.unique(target[bad]).tolist()[:8]
            raise ValueError(
                f"target holds values outside [0, {k}) that are not ignore_index={self.ignore_index}: {vals}")

        cls = class_argmax(cams)  # first maximum on ties, as in cams_to_seeds
        top = cams.amax(dim=1)
        # Thresholds cast to the CAM dtype so that comparisons match cams_to_seeds exactly;
        # bucket = number of thresholds strictly below the pixel's top CAM.
        th = self.thresholds.to(device=cams.device, dtype=cams.dtype)
        bucket = torch.searchsorted(th, top.contiguous(), right=False)
        flat = (bucket * k + target) * k + (cls + 1)
        flat = torch.where(valid, flat, torch.full_like(flat, (t + 1) * k * k))
        hist = torch.bincount(flat.reshape(-1), minlength=(t + 1) * k * k + 1)[: (t + 1) * k * k]
        hist = hist.reshape(t + 1, k, k)  # [bucket, gt, fg-pred]

        # Threshold j predicts the foreground class for buckets > j, background for buckets <= j.
        fg = hist.flip(0).cumsum(0).flip(0)[1:]  # sum over buckets > j
        per_gt = hist.sum(2)  # (T+1, K) pixels per (bucket, gt)
        bg = per_gt.cumsum(0)[:t]  # sum over buckets <= j
        mats = fg.clone()
        mats[:, :, 0] += bg
        self._local = mats if self._local is None else self._local + mats.to(self._local.device)

    def all_reduce(self) -> "ThresholdSweep":
        """Sum the matrices over processes (no-op without ``torch.distributed``); safe to repeat."""
        local = self._local if self._local is not None else self._empty()
        total = all_reduce_sum(local)
        self._local = local
        self._remote = total - local
        return self

    def _empty(self) -> torch.Tensor:
        k = self.num_classes + 1
        return torch.zeros(self.num_thresholds, k, k, dtype=torch.long)

    @property
    def matrices(self) -> torch.Tensor:
        """``int64 (T, C+1, C+1)``: one confusion matrix per threshold (rows = ground truth)."""
        local = self._local if self._local is not None else self._empty()
        return local + self._remote.to(local.device) if self._remote is not None else local.clone()

    def ious(self) -> torch.Tensor:
        """Per-class IoU ``float64 (T, C+1)`` on the CPU, NaN for classes absent from gt and seeds."""
        return iou_from_confusion(self.matrices).cpu()

    def mious(self) -> torch.Tensor:
        """mIoU per threshold ``float64 (T,)`` (NaN-mean over classes)."""
        return torch.nanmean(self.ious(), dim=1)

    def results(self) -> list[tuple[float, float]]:
        """``[(threshold, miou), ...]`` in ascending threshold order."""
        return list(zip(self.thresholds.tolist(), self.mious().tolist()))

    def best(self) -> tuple[float, float]:
        """``(threshold, miou)`` with the highest mIoU (the lowest such threshold on ties)."""
        if int(self.matrices.sum()) == 0:
            raise RuntimeError("ThresholdSweep has counted no pixels: call update() with CAMs and masks first")
        m = self.mious()
        i = int(torch.nan_to_num(m, nan=-1.0).argmax())
        return float(self.thresholds[i]), float(m[i])

    def index_of(self, threshold: float) -> int:
        """Position of ``threshold`` among :attr:`thresholds` (within 1e-6), else ``ValueError``."""
        diff = (self.thresholds - float(threshold)).abs()
        i = int(diff.argmin())
        if float(diff[i]) > 1e-6:
            raise ValueError(
                f"threshold {threshold} was not swept; swept {self.num_thresholds} thresholds from "
                f"{float(self.thresholds[0]):g} to {float(self.thresholds[-1]):g}"
            )
        return i

    def confusion(self, threshold: float) -> ConfusionMatrix:
        """The accumulated :class:`ConfusionMatrix` of one swept threshold (e.g. the best one)."""
        cm = ConfusionMatrix(self.num_classes + 1, self.ignore_index)
        cm.load_state_dict({"matrix": self.matrices[self.index_of(threshold)]})
        return cm

    def __repr__(self) -> str:
        lo, hi = float(self.thresholds[0]), float(self.thresholds[-1])
        return f"ThresholdSweep(num_classes={self.num_classes}, thresholds={self.num_thresholds} in [{lo:g}, {hi:g}])"
