"""The dense-CRF parameter sets of the random-walk refiners' training labels, as data (entry-point
group ``wsss_kit.crf_params``; origins in docs/methods.md)."""

from __future__ import annotations

from wsss_kit.catalog import Alias
from wsss_kit.crf import CRFParams

from .relation_labels import IRN_LABEL_CRF  # defined beside the code that uses it

__all__ = ["RANDOM_WALK_CRF_PARAMS"]

RANDOM_WALK_CRF_PARAMS: dict[str, CRFParams | Alias] = {
    # PSA's CRF (and MCTformer's, which runs PSA's code) is the DeepLab default.
    "psa": Alias("default"),
    "mctformer_psa": Alias("default"),
    "irn_label": IRN_LABEL_CRF,
}
