"""Dense CRF: the papers' parameter sets, pydensecrf inference in worker processes, the refiner."""

from .dense_crf import crf_inference, dense_crf
from .params import PARAM_SETS, CRFParams, get_params, param_names
from .pool import CRFPool, dense_crf_batch, shared_pool, shutdown_shared_pool
from .refiner import DenseCRF, cams_to_probs, images_to_uint8, seeds_to_probs

__all__ = [
    "PARAM_SETS",
    "CRFParams",
    "CRFPool",
    "DenseCRF",
    "cams_to_probs",
    "crf_inference",
    "dense_crf",
    "dense_crf_batch",
    "get_params",
    "images_to_uint8",
    "param_names",
    "seeds_to_probs",
    "shared_pool",
    "shutdown_shared_pool",
]
