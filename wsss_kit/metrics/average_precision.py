"""Multi-label average precision: per-class AP over images and their mean (mAP).

AP is the non-interpolated area under the precision-recall curve, ``sum_n (R_n - R_{n-1}) P_n``
over the distinct score thresholds (tied scores form one threshold), the definition of
scikit-learn's ``average_precision_score`` and of the multi-label classification mAP that
VOC/COCO classification papers report.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["average_precision", "mean_average_precision"]


def _check(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if scores.dim() == 1:
        scores = scores[:, None]
    if targets.dim() == 1:
        targets = targets[:, None]
    if scores.dim() != 2 or tuple(scores.shape) != tuple(targets.shape):
        raise ValueError(f"average_precision: scores and targets must both be (N, K), got scores "
                         f"{tuple(scores.shape)} and targets {tuple(targets.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("average_precision: no samples (N = 0)")
    t = targets.detach().to("cpu", torch.float64)
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("average_precision: targets must be 0/1 (multi-hot), got other values")
    s = scores.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(s).all()):
        raise ValueError("average_precision: scores hold NaN or infinite values")
    return s, t


def _ap_one(scores: Tensor, targets: Tensor) -> float:
    positives = float(targets.sum())
    if positives == 0:
        return math.nan
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order], targets[order]
    tp = torch.cumsum(t, 0)
    # the last position of each run of tied scores: one threshold per distinct score
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp = tp[last]
    seen = torch.nonzero(last).flatten().to(torch.float64) + 1
    precision = tp / seen
    recall = tp / positives
    gained = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gained * precision).sum())


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-class average precision over the ``N`` samples.

    Args:
        scores: ``(N, K)`` (or ``(N,)``) any real scores, higher = more likely present.
        targets: ``(N, K)`` (or ``(N,)``) 0/1 presence.

    Returns:
        float64 ``(K,)`` AP in ``[0, 1]``; ``nan`` for a class with no positive sample.

    Raises:
        ValueError: shapes differ, no samples, non-0/1 targets or non-finite scores.
    """
    s, t = _check(scores, targets)
    return torch.tensor([_ap_one(s[:, k], t[:, k]) for k in range(s.shape[1])], dtype=torch.float64)


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Mean of :func:`average_precision` over the classes that have a positive sample (``nan`` if none)."""
    ap = average_precision(scores, targets)
    valid = ap[~torch.isnan(ap)]
    return float(valid.mean()) if valid.numel() else math.nan
