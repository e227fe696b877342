"""Dense CRF: the papers' parameter sets, pydensecrf inference in worker processes, a batched torch
backend (permutohedral lattice, CPU/CUDA), the refiner."""

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
from .pool import CRFPool, check_workers, dense_crf_batch, shared_pool, shutdown_shared_pool
from .refiner import DenseCRF, cams_to_probs, images_to_uint8, seeds_to_probs
from .torch_crf import BACKENDS, DenseCRFTorch, dense_crf_torch, dense_crf_torch_batch, resolve_backend

__all__ = [
    "BACKENDS",
    "CRF_PARAMS_GROUP",
    "PARAM_SETS",
    "CRFParams",
    "CRFPool",
    "DenseCRF",
    "DenseCRFTorch",
    "cams_to_probs",
    "check_workers",
    "dense_crf",
    "dense_crf_batch",
    "dense_crf_torch",
    "dense_crf_torch_batch",
    "get_params",
    "images_to_uint8",
    "list_crf_params",
    "param_names",
    "register_crf_params",
    "resolve_backend",
    "seeds_to_probs",
    "shared_pool",
    "shutdown_shared_pool",
]
