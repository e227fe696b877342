"""WeakCLIP's boundary loss (paper Eq. 13): a clipped KL divergence to a dense CRF of the prediction.

``P`` are the loss-grid probabilities (:func:`~wsss_weakclip.loss_inputs.dsrg_probabilities`);
``Q`` the marginals of a fully connected CRF run on ``max(P, 1e-4)`` (detached, all ``K``
channels, as in the official code) and on the image resized to the same grid; ``Q`` is clamped
at 1e-4 and renormalised. The loss is

.. math::
    L = \\frac{1}{B\\,h\\,w} \\sum_{b,u} \\sum_{k} Q_{b,k}(u)
        \\log \\operatorname{clamp}\\!\\Big(\\frac{Q_{b,k}(u)}{P_{b,k}(u)}, 0.05, 20\\Big)

with ``Q`` a constant; the clamp passes no gradient outside ``[0.05, 20]``.

The CRFs of a batch run in worker processes (:func:`wsss_kit.crf.dense_crf_batch` and its
shared :class:`~wsss_kit.crf.CRFPool`; pydensecrf holds the GIL, so threads would not help);
``workers=0`` runs them one after the other in this process, as the official code does.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import wsss_kit
from wsss_kit.crf import CRFParams, CRFPool, dense_crf_batch, get_params
from wsss_kit.crf.dense_crf import check_crf_inputs

from .loss_inputs import DEFAULT_LOSS_SIZE, check_logits, check_same_view, dsrg_probabilities

__all__ = [
    "CRF_MIN_PROB",
    "RATIO_RANGE",
    "CRFBoundaryLoss",
    "boundary_loss_from_crf",
    "crf_boundary_loss",
    "crf_targets",
    "images_for_crf",
]

CRF_MIN_PROB = 1e-4
"""Floor of ``P`` before the CRF and of ``Q`` after it (official)."""

RATIO_RANGE = (0.05, 20.0)
"""Clamp of ``Q / P`` inside the logarithm (official)."""

Workers = Union[int, str, None]


def boundary_loss_from_crf(probs: Tensor, crf_probs: Tensor) -> Tensor:
    """Eq. 13 with ``Q`` given: ``mean_{b,u} Σ_k Q log clamp(Q / P, 0.05, 20)``.

    The inner form of :func:`crf_boundary_loss`, differentiable in ``probs`` (``crf_probs`` is
    treated as a constant).

    Args:
        probs: ``(B, K, h, w)`` prediction ``P``, > 0.
        crf_probs: ``(B, K, h, w)`` CRF marginals ``Q`` (clamped and renormalised, see
            :func:`crf_targets`).

    Returns:
        a scalar.
    """
    if probs.shape != crf_probs.shape:
        raise ValueError(
            f"probs and crf_probs must have the same shape (B, K, h, w); got {tuple(probs.shape)} "
            f"and {tuple(crf_probs.shape)}"
        )
    q = crf_probs.detach().to(device=probs.device, dtype=probs.dtype)
    ratio = torch.clamp(q / probs, RATIO_RANGE[0], RATIO_RANGE[1])
    return (q * torch.log(ratio)).sum(dim=1).mean()


def images_for_crf(images: Tensor, size: int) -> np.ndarray:
    """``(B, 3, H, W)`` images in [0, 1] → ``uint8 (B, size, size, 3)`` for the loss CRF.

    Bilinear resize with ``align_corners=True`` (the official ``scipy.ndimage.zoom(order=1)``
    maps corners to corners), then ``× 255``, rounded and clipped. (The official code truncates
    its de-normalised floats; rounding differs by at most one grey level.)
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float RGB in [0, 1], got dtype {images.dtype}")
    x = images.detach().float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def _resolve_params(params: str | CRFParams | dict[str, Any] | None, iterations: int | None) -> CRFParams:
    resolved = get_params(params)
    if iterations is not None:
        resolved = resolved.replace(iterations=iterations)
    return resolved


def _workers_arg(workers: Workers) -> int | None:
    if workers is None or workers == "auto":
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"workers must be 'auto' (one process per CPU core), 0 (this process) or a positive "
            f"number of processes, got {workers!r}"
        )
    return workers


def crf_targets(
    probs: Tensor,
    images: Tensor,
    params: str | CRFParams | dict[str, Any] | None = "weakclip_loss",
    iterations: int | None = 10,
    workers: Workers = "auto",
    pool: CRFPool | None = None,
) -> Tensor:
    """The boundary loss's target ``Q``: a dense CRF of ``max(P, 1e-4)`` on the image, clamped, renormalised.

    The CRF runs over every one of the ``K`` channels (the official code does not restrict it
    to the image's classes), with unary ``-log max(P, 1e-4)`` (not renormalised after the clamp,
    as officially) and the image resized to ``P``'s grid (:func:`images_for_crf`).

    Args:
        probs: ``(B, K, h, w)`` probabilities ``P`` (detached here), with ``h == w``.
        images: ``(B, 3, H, W)`` RGB in [0, 1], the images the logits were computed on.
        params: a CRF parameter set (name, mapping or :class:`~wsss_kit.crf.CRFParams`); the
            official ``weakclip_loss`` is Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13
            compat 10.
        iterations: mean-field iterations (official 10); ``None`` keeps the set's.
        workers: ``"auto"`` = one process per available CPU core (at most ``B``), ``0`` = serial
            in this process (the official behaviour), ``n`` = ``n`` processes.
        pool: a :class:`~wsss_kit.crf.CRFPool` to use instead of the shared one (``workers`` is
            then ignored).

    Returns:
        ``Q``: ``(B, K, h, w)`` on ``probs``' device and dtype, ``Q >= 1e-4`` (before the
        renormalisation), summing to 1 over ``K``.

    Raises:
        ValueError: bad shapes or a batch/aspect mismatch, naming both sizes.
        ImportError: pydensecrf is missing (with the install command).
        RuntimeError: a CRF failed (naming the image index).
    """
    probs = check_logits(probs, "probs")
    batch, _, height, width = probs.shape
    if height != width:
        raise ValueError(f"probs must be on a square loss grid, got {height}×{width}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a (B, 3, H, W) tensor, got "
            f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}"
        )
    if images.shape[0] != batch:
        raise ValueError(f"images hold {images.shape[0]} images but the logits hold {batch}")
    settings = _resolve_params(params, iterations).as_tuple()
    images_u8 = images_for_crf(images, height)
    p = probs.detach().float().clamp_min(CRF_MIN_PROB).cpu().numpy()
    if pool is not None:
        checked = [check_crf_inputs(images_u8[i], p[i], where=f"image {i}") for i in range(batch)]
        q_list = pool.map([c[0] for c in checked], [c[1] for c in checked], settings)
    else:
        q_list = dense_crf_batch(list(images_u8), list(p), settings, workers=_workers_arg(workers))
    q = np.stack(q_list).astype(np.float64)
    q = np.maximum(q, CRF_MIN_PROB)
    q /= q.sum(axis=1, keepdims=True)
    return torch.from_numpy(q).to(device=probs.device, dtype=probs.dtype)


def crf_boundary_loss(
    logits: Tensor,
    images: Tensor,
    size: int = DEFAULT_LOSS_SIZE,
    params: str | CRFParams | dict[str, Any] | None = "weakclip_loss",
    iterations: int | None = 10,
    workers: Workers = "auto",
    pool: CRFPool | None = None,
) -> Tensor:
    """Boundary loss of WeakCLIP (paper Eq. 13) as the official code computes it.

    ``P`` = :func:`~wsss_weakclip.loss_inputs.dsrg_probabilities` of the logits at
    ``size × size`` (softmax + 1e-7, renormalised; the same ``P`` as the seeding loss),
    ``Q`` = :func:`crf_targets` of the detached ``P``, and the loss
    :func:`boundary_loss_from_crf`: the mean over the ``B · size²`` pixels of
    ``Σ_k Q log clamp(Q / P, 0.05, 20)``. Gradients flow through ``P`` only.

    Differences from the paper's Eq. 13 (see ``docs/paper_vs_code.md``): the ratio is clamped
    to [0.05, 20], ``P`` and ``Q`` are floored, the sum runs over all ``K`` channels (background
    and absent classes included), and everything happens on a 64 × 64 grid.

    Args:
        logits: ``(B, K, h, w)`` decoder logits, channel 0 = background.
        images: ``(B, 3, H, W)`` RGB in [0, 1] (not normalised) of the same view.
        size: side of the loss grid (official 64).
        params, iterations, workers, pool: the CRF, see :func:`crf_targets`.

    Returns:
        a scalar tensor attached to ``logits``' graph.

    Raises:
        TypeError / ValueError: bad inputs (shapes, dtypes, batch or aspect mismatch naming
            both sizes, workers).
        ImportError: pydensecrf is missing.
        RuntimeError: a CRF failed (naming the image index) or a worker died.
    """
    logits = check_logits(logits)
    if isinstance(images, Tensor) and images.dim() == 4:
        check_same_view("the image", tuple(images.shape[-2:]), "the logits", tuple(logits.shape[-2:]))
    probs = dsrg_probabilities(logits, size)
    q = crf_targets(probs, images, params, iterations, workers, pool)
    return boundary_loss_from_crf(probs, q)


class CRFBoundaryLoss(wsss_kit.Loss):
    """Module form of :func:`crf_boundary_loss` (paper Eq. 13).

    ``forward(logits (B, K, h, w), images (B, 3, H, W) in [0, 1]) -> scalar``. The CRF
    parameters are resolved when the module is built (an unknown set name fails here).
    """

    wsss_api_version = "1.0"

    def __init__(
        self,
        size: int = DEFAULT_LOSS_SIZE,
        params: str | CRFParams | dict[str, Any] | None = "weakclip_loss",
        iterations: int | None = 10,
        workers: Workers = "auto",
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer (the loss grid side), got {size!r}")
        _workers_arg(workers)
        self.size = size
        self.crf_params = _resolve_params(params, iterations)
        self.workers = workers

    def forward(self, logits: Tensor, images: Tensor) -> Tensor:
        return crf_boundary_loss(logits, images, self.size, self.crf_params, None, self.workers)

    def extra_repr(self) -> str:
        p = self.crf_params
        return (
            f"size={self.size}, gaussian=({p.gauss_sxy:g}, {p.gauss_compat:g}), bilateral=("
            f"{p.bilateral_sxy:g}, {p.bilateral_srgb:g}, {p.bilateral_compat:g}), "
            f"iterations={p.iterations}, workers={self.workers!r}"
        )
