"""Fully connected CRF inference with ``pydensecrf`` (the ``pydensecrf2`` distribution).

This module imports only numpy at the top, and nothing relative to its package: the worker
processes of :mod:`wsss_kit.crf.pool` load this file on its own, so that they start without
importing torch (see that module).
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from wsss_kit.crf.params import CRFParams

__all__ = ["DEFAULT_MIN_PROB", "Settings", "check_crf_inputs", "crf_inference", "crf_settings", "dense_crf"]

DEFAULT_MIN_PROB = 1e-5
"""Probabilities are clamped to this before ``-log`` so that a zero gives a finite unary."""

Settings = tuple[float, float, float, float, float, int]
"""``(gauss_sxy, gauss_compat, bilateral_sxy, bilateral_srgb, bilateral_compat, iterations)``."""


def _import_densecrf() -> Any:
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as exc:
        raise ImportError(
            "pydensecrf is not installed; install it with `pip install pydensecrf2` "
            f"(the original pydensecrf 1.0rc3 does not build with Cython 3). Cause: {exc}"
        ) from exc
    return dcrf


def check_crf_inputs(image: Any, probs: Any, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validate one CRF input pair and return contiguous ``uint8 (H, W, 3)`` and ``float32 (K, H, W)``."""
    at = f" ({where})" if where else ""
    image = np.asarray(image)
    probs = np.asarray(probs)
    if image.dtype != np.uint8:
        raise ValueError(
            f"CRF image{at} must be uint8 (H, W, 3) RGB, got dtype {image.dtype}; convert a [0, 1] "
            f"float image with (image * 255).round().clip(0, 255).astype(np.uint8)"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"CRF image{at} must be (H, W, 3), got shape {image.shape}")
    if probs.ndim != 3:
        raise ValueError(f"CRF probs{at} must be (K, H, W), got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"CRF probs{at} must be floating point, got dtype {probs.dtype}")
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"CRF probs{at} are {probs.shape[1]}x{probs.shape[2]} but the image is "
            f"{image.shape[0]}x{image.shape[1]}"
        )
    if probs.shape[0] < 1:
        raise ValueError(f"CRF probs{at} have no classes (shape {probs.shape})")
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError(f"CRF probs{at} must be finite and >= 0")
    return np.ascontiguousarray(image), probs


def crf_inference(
    image: np.ndarray, probs: np.ndarray, settings: Settings, min_prob: float = DEFAULT_MIN_PROB
) -> np.ndarray:
    """Mean-field inference on already validated, contiguous inputs; see :func:`dense_crf`."""
    gauss_sxy, gauss_compat, bil_sxy, bil_srgb, bil_compat, iterations = settings
    k, h, w = probs.shape
    if k == 1:
        return np.ones_like(probs, dtype=np.float32)
    dcrf = _import_densecrf()
    unary = -np.log(np.clip(probs, min_prob, None)).reshape(k, h * w)
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=float(gauss_sxy), compat=float(gauss_compat))
    crf.addPairwiseBilateral(
        sxy=float(bil_sxy), srgb=float(bil_srgb), rgbim=image, compat=float(bil_compat)
    )
    q = crf.inference(int(iterations))
    return np.asarray(q, dtype=np.float32).reshape(k, h, w)


def crf_settings(params: Any) -> Settings:
    """The six numbers a worker needs (:data:`Settings`) from a parameter-set name, mapping,
    :class:`~wsss_kit.crf.params.CRFParams` or an already made tuple."""
    if isinstance(params, tuple) and len(params) == 6:
        return params
    from wsss_kit.crf.params import get_params  # the package import stays out of worker processes

    return get_params(params).as_tuple()


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    params: "str | CRFParams | dict[str, Any] | None" = "default",
    min_prob: float = DEFAULT_MIN_PROB,
    backend: str = "pydensecrf",
) -> np.ndarray:
    """Refine class probabilities of one image with a fully connected CRF.

    Unary = ``-log(max(probs, min_prob))``; pairwise = a Gaussian (smoothness) kernel and a
    bilateral (appearance) kernel, Potts compatibility. A per-pixel scale of ``probs`` only adds
    a constant to that pixel's unaries, so unnormalised scores give the same result (up to the
    clamp).

    Args:
        image: ``uint8 (H, W, 3)`` RGB.
        probs: ``float (K, H, W)``, >= 0, normally summing to 1 over ``K``.
        params: a parameter-set name (``"default"``, ``"weakclip_voc"``...), a mapping or a
            :class:`~wsss_kit.crf.params.CRFParams`; see :func:`~wsss_kit.crf.params.get_params`.
        min_prob: floor applied before the logarithm.
        backend: ``"pydensecrf"`` (the reference), ``"torch"`` (:mod:`wsss_kit.crf.torch_crf`, on
            CPU here) or ``"auto"`` (see :func:`~wsss_kit.crf.torch_crf.resolve_backend`).

    Returns:
        ``float32 (K, H, W)``: the CRF's marginals, summing to 1 over ``K``.

    Raises:
        ValueError: wrong dtype/shape, sizes that disagree, negative or non-finite probs, an
            unknown backend (listing the valid ones).
        ImportError: pydensecrf is missing (with the install command).
    """
    image, probs = check_crf_inputs(image, probs)
    if backend != "pydensecrf":
        if _other_backends is None:
            raise ImportError(f"dense_crf(backend={backend!r}) needs wsss_kit.crf.torch_crf, which registers the "
                              "other backends when imported (import wsss_kit.crf)")
        result = _other_backends(image, probs, crf_settings(params), min_prob, backend)
        if result is not None:
            return result
    return crf_inference(image, probs, crf_settings(params), min_prob)


OtherBackends = Any
"""``(image, probs, settings, min_prob, backend) -> (K, H, W) float32 marginals, or None for pydensecrf``."""

_other_backends: OtherBackends | None = None
"""Set by :mod:`wsss_kit.crf.torch_crf` on import. This file imports nothing of the package (worker
processes load it on its own, without torch), so the torch backend reaches it by registration."""


def crf_chunk(items: list[tuple[int, np.ndarray, np.ndarray]], settings: Settings, min_prob: float) -> list:
    """Worker task: CRF of ``(index, image, probs)`` items.

    Returns ``(index, result, None)`` or, on failure, ``(index, None, traceback text)``, so that
    the parent can name the image that failed."""
    out: list[tuple[int, np.ndarray | None, str | None]] = []
    for index, image, probs in items:
        try:
            out.append((index, crf_inference(image, probs, settings, min_prob), None))
        except Exception as exc:  # noqa: BLE001 - reported to the parent with the image index
            out.append((index, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    return out
