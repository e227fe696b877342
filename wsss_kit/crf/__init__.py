"""Dense CRF: the papers' parameter sets, pydensecrf inference in worker processes, the refiner."""

from .dense_crf import dense_crf
from .params import (
    CRF_PARAMS_GROUP,
    PARAM_SETS,
    CRFParams,
    get_params,
    list_crf_params,
    param_names,
    register_crf_params,
)
from .pool import CRFPool, dense_crf_batch, shared_pool, shutdown_shared_pool
from .refiner import DenseCRF, cams_to_probs, images_to_uint8, seeds_to_probs

__all__ = [
    "CRF_PARAMS_GROUP",
    "PARAM_SETS",
    "CRFParams",
    "CRFPool",
    "DenseCRF",
    "cams_to_probs",
    "dense_crf",
    "dense_crf_batch",
    "get_params",
    "images_to_uint8",
    "list_crf_params",
    "param_names",
    "register_crf_params",
    "seeds_to_probs",
    "shared_pool",
    "shutdown_shared_pool",
]
