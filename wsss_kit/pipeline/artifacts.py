"""The run's artifact files; they live in :mod:`wsss_kit.data.artifacts` (plugins read them too).
This module keeps the old import path working."""

from ..data.artifacts import MaskTargetDataset, load_cams, read_mask_artifact, save_cams

__all__ = ["MaskTargetDataset", "load_cams", "read_mask_artifact", "save_cams"]
