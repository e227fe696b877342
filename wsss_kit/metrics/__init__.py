"""Segmentation metrics: confusion-matrix IoU, result tables and CAM threshold sweeps; multi-label AP."""

from .average_precision import average_precision, mean_average_precision
from .confusion import (
    ConfusionMatrix,
    confusion_matrix,
    iou_from_confusion,
    metrics_from_confusion,
)
from .table import format_iou_table, format_stage_table
from .threshold_sweep import ThresholdSweep, default_thresholds

__all__ = [
    "ConfusionMatrix",
    "ThresholdSweep",
    "average_precision",
    "confusion_matrix",
    "default_thresholds",
    "format_iou_table",
    "format_stage_table",
    "iou_from_confusion",
    "mean_average_precision",
    "metrics_from_confusion",
]
