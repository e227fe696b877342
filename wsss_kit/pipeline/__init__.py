"""Pipelines over a run directory: train_cam → cams → seeds → train_refiner → pseudo_masks → train_head → eval."""

from .cam_export import export_cams
from .context import RunContext, Shard
from .runner import format_report, run_pipeline
from .stage_table import STAGE_TABLE, STAGES, Stage
from .validation import Plan, check_run_config, plan_run

__all__ = ["STAGES", "STAGE_TABLE", "Plan", "RunContext", "Shard", "Stage", "check_run_config", "export_cams",
           "format_report", "plan_run", "run_pipeline"]
