"""Pipelines over a run directory: train_cam → cams → seeds → train_refiner → pseudo_masks → train_head → eval."""

from .cam_export import export_cams
from .context import STAGES, RunContext, Shard
from .runner import format_report, run_pipeline

__all__ = ["STAGES", "RunContext", "Shard", "export_cams", "format_report", "run_pipeline"]
