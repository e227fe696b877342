"""Classification losses for CAM networks trained from image-level labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import wsss_kit
from wsss_kit.shapes import check_shape

REDUCTIONS = ("mean", "sum", "none")


def multilabel_soft_margin_loss(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Multi-label one-vs-all logistic loss, the image-level loss of IRN/CLIMS/MCTformer.

    .. math::
        \\ell_b = -\\frac{1}{C} \\sum_{c=1}^{C} y_{bc} \\log \\sigma(x_{bc})
                  + (1 - y_{bc}) \\log \\sigma(-x_{bc})

    computed with ``logsigmoid`` for stability; equal to
    ``torch.nn.functional.multilabel_soft_margin_loss``.

    Args:
        logits: ``(B, C)`` class scores (any real values).
        labels: ``(B, C)`` multi-hot targets in [0, 1] (soft targets are accepted).
        reduction: ``"mean"`` over the batch (default), ``"sum"`` over the batch, or ``"none"``
            for the per-image loss ``(B,)``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"``.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"logits and labels must be tensors; got {type(logits).__name__} and {type(labels).__name__}"
        )
    check_shape(logits, "B C", "logits")
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels must have the logits' shape {tuple(logits.shape)} (B, C); got {tuple(labels.shape)}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    labels = labels.to(logits.dtype)
    per_class = -(labels * F.logsigmoid(logits) + (1.0 - labels) * F.logsigmoid(-logits))
    per_image = per_class.mean(dim=1)
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    return per_image


class MultiLabelSoftMarginLoss(wsss_kit.Loss):
    """Module form of :func:`multilabel_soft_margin_loss`.

    ``forward(logits (B, C), labels (B, C)) -> scalar`` (or ``(B,)`` with ``reduction="none"``).
    """

    wsss_api_version = "1.0"

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return multilabel_soft_margin_loss(logits, labels, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
