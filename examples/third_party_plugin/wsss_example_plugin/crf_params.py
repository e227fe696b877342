"""The plugin's dense-CRF parameter sets, as data (entry point group ``wsss_kit.crf_params``): usable
by name in configs, e.g. ``refiner: {type: refiners/dense_crf, params: tiny_cam_sharp}``."""

from __future__ import annotations

from wsss_kit.catalog import Alias
from wsss_kit.crf import CRFParams

__all__ = ["CRF_PARAMS"]

CRF_PARAMS: dict[str, CRFParams | Alias] = {
    # Gaussian (sxy, compat), bilateral (sxy, srgb, compat), iterations.
    "tiny_cam_sharp": CRFParams(2, 3, 40, 8, 6, 5),
    # The same values as the core's default set: an alias, not a copy.
    "tiny_cam_smooth": Alias("default"),
}
