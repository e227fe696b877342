"""WeakCLIP's boundary loss (paper Eq. 13): a clipped KL divergence to a dense CRF of the prediction.

``P`` are the loss-grid probabilities (:func:`~wsss_weakclip.loss_inputs.dsrg_probabilities`);
``Q`` the marginals of a fully connected CRF run on ``max(P, 1e-4)`` (detached, all ``K``
channels, as in the official code) and on the image resized to the same grid; ``Q`` is clamped
at 1e-4 and renormalised. The loss is

.. math::
    L = \\frac{1}{B\\,h\\,w} \\sum_{b,u} \\sum_{k} Q_{b,k}(u)
        \\log \\operatorname{clamp}\\!\\Big(\\frac{Q_{b,k}(u)}{P_{b,k}(u)}, 0.05, 20\\Big)

with ``Q`` a constant; the clamp passes no gradient outside ``[0.05, 20]``.

The CRF's image (:func:`images_for_crf`) is, by default (``crf_image="official"``, the
``official`` preset), made exactly as the official code makes it: the normalised float32 image
the network sees, resized to the grid, un-normalised with mmseg's 0..255 mean/std, truncated to
uint8 (:func:`official_crf_images`), so the CRF input is bit-equal. ``crf_image="rounded"`` (the
``paper`` preset) rounds the resized [0, 1] image instead; about half of the values then differ
by one grey level and the loss by ~1e-3 relative.

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
from wsss_kit.clip import IMAGENET_MEAN, IMAGENET_STD
from wsss_kit.crf import CRFParams, CRFPool, dense_crf_batch, dense_crf_torch, get_params, resolve_backend
from wsss_kit.crf.dense_crf import check_crf_inputs
from wsss_kit.input_space import Stats, check_input_space, normalize_input, to_unit
from wsss_kit.shapes import check_shape

from .loss_inputs import DEFAULT_LOSS_SIZE, check_logits, check_same_view, dsrg_probabilities

__all__ = [
    "CRF_IMAGES",
    "CRF_MIN_PROB",
    "RATIO_RANGE",
    "CRFBoundaryLoss",
    "boundary_loss_from_crf",
    "crf_boundary_loss",
    "crf_targets",
    "images_for_crf",
    "official_crf_images",
    "official_statistics",
]

CRF_MIN_PROB = 1e-4
"""Floor of ``P`` before the CRF and of ``Q`` after it (official)."""

RATIO_RANGE = (0.05, 20.0)
"""Clamp of ``Q / P`` inside the logarithm (official)."""

CRF_IMAGES = ("official", "rounded")
"""How the CRF image is made (:func:`images_for_crf`): the official truncation of the un-normalised
resized normalised image, or the rounding of the resized [0, 1] image."""

IMAGENET: Stats = (IMAGENET_MEAN, IMAGENET_STD)
"""WeakCLIP's image normalisation (mmseg ``img_norm_cfg``), in [0, 1] units."""

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


def official_crf_images(normalized: Tensor, size: int, normalization: Stats = IMAGENET) -> np.ndarray:
    """The official boundary-loss CRF image: ``(B, 3, H, W)`` *normalised* images → ``uint8 (B, size, size, 3)``.

    The official code (``dgcn_crf_operation``) takes the normalised float32 batch the network was
    fed and, in this order: resizes it to the loss grid with ``scipy.ndimage.zoom(order=1)``
    (bilinear, corners mapped to corners, computed in float64 and stored as float32), moves the
    channels last, multiplies by ``std`` and adds ``mean`` (the 0..255 statistics of mmseg's
    ``img_norm_cfg``, float32 arrays; two float32 roundings), and casts to uint8, which truncates
    toward zero. The same steps here (the resize in float64, then float32), so the CRF input is
    bit-equal to the official one for the same normalised tensor.

    Args:
        normalized: ``(B, 3, H, W)`` float, ``(x - mean) / std`` of images in [0, 1].
        size: the loss grid side (official 64).
        normalization: ``(mean, std)`` in [0, 1] units, 3 values each; the 0..255 statistics are
            ``float32(mean · 255)`` and ``float32(std · 255)`` (for ImageNet's: exactly mmseg's
            ``[123.675, 116.28, 103.53]`` and ``[58.395, 57.12, 57.375]``).

    Un-normalised values outside ``(-1, 256)`` come only from tensors that are no normalised
    image; the official cast is undefined for them (it wraps on x86), here they saturate at 0 / 255.
    """
    x = _check_crf_images(normalized, "normalized images")
    official_statistics(normalization)  # checked before any work
    return _un_normalise(_bilinear(*_sampled_pixels(x.detach().float(), size)), normalization)


def _sampled_pixels(images: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The source pixels a corner-aligned bilinear resize to ``size × size`` reads, and its weights.

    Output pixel ``k`` samples ``k · (n − 1) / (size − 1)`` (``scipy.ndimage.zoom(order=1)``'s
    coordinates). Returns the float32 pixels ``(B, C, 2 size, 2 size)`` on the CPU (rows ``y0`` then
    ``y1``, columns ``x0`` then ``x1``; gathered on the images' device, an exact copy) and the float64
    weights of ``y1`` and ``x1``. Only these pixels are normalised and moved, not the whole image.
    """
    def taps(n: int) -> tuple[Tensor, Tensor]:
        step = (n - 1) / (size - 1) if size > 1 else 0.0
        pos = torch.arange(size, dtype=torch.float64) * step
        lo = pos.floor().long().clamp(0, n - 1)
        return torch.cat([lo, (lo + 1).clamp(max=n - 1)]), pos - lo

    (rows, wy), (cols, wx) = taps(images.shape[-2]), taps(images.shape[-1])
    sub = images.index_select(-2, rows.to(images.device)).index_select(-1, cols.to(images.device))
    return sub.cpu(), wy.view(1, 1, -1, 1), wx.view(1, 1, 1, -1)


def _bilinear(sub: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """The resize from :func:`_sampled_pixels`, in float64 on the CPU (as scipy computes it; no kernel
    fuses the products and sums there), rounded once to float32."""
    size = wy.shape[-2]
    x = sub.double()
    top, bottom = x[..., :size, :], x[..., size:, :]
    upper = top[..., :size] * (1 - wx) + top[..., size:] * wx
    lower = bottom[..., :size] * (1 - wx) + bottom[..., size:] * wx
    return (upper * (1 - wy) + lower * wy).float()


def _un_normalise(resized: Tensor, normalization: Stats) -> np.ndarray:
    """``(B, 3, h, w)`` float32 resized normalised images → uint8 ``(B, h, w, 3)``, the official way."""
    mean255, std255 = official_statistics(normalization)
    x = resized.permute(0, 2, 3, 1)
    x = x * torch.from_numpy(std255)  # two float32 roundings, as numpy does (no fused multiply-add)
    x = x + torch.from_numpy(mean255)
    # float -> uint8 truncates toward zero; the clamp changes nothing for values in (-1, 256).
    return np.ascontiguousarray(x.clamp(0, 255).to(torch.uint8).numpy())


def official_statistics(normalization: Stats = IMAGENET) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` in [0, 1] units → the 0..255 float32 arrays the official code un-normalises with."""
    mean, std = normalization
    mean = [float(m) for m in (mean.flatten().tolist() if isinstance(mean, Tensor) else mean)]
    std = [float(s) for s in (std.flatten().tolist() if isinstance(std, Tensor) else std)]
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise ValueError(f"normalization must be (mean, std) with 3 values each and std > 0, got {normalization!r}")
    # float64 products rounded once to float32: 0.485 * 255 -> float32(123.675), mmseg's value.
    return (np.array([m * 255.0 for m in mean], dtype=np.float32),
            np.array([s * 255.0 for s in std], dtype=np.float32))


def images_for_crf(images: Tensor, size: int, *, crf_image: str = "official", input_space: str = "unit",
                   normalization: Stats = IMAGENET) -> np.ndarray:
    """``(B, 3, H, W)`` images → ``uint8 (B, size, size, 3)`` for the boundary loss's CRF.

    Args:
        images: RGB in [0, 1] (``input_space="unit"``) or already normalised with
            ``normalization`` (``"normalized"``, as the official data loaders give them).
        size: the loss grid side.
        crf_image: ``"official"`` (:func:`official_crf_images` of the normalised images: the
            official resize of the normalised tensor, un-normalised, truncated; the ``official``
            preset) or ``"rounded"`` (the images in [0, 1] resized bilinearly with
            ``align_corners=True``, ``× 255``, rounded to the nearest grey level; the ``paper``
            preset). They differ by at most one grey level.
        input_space, normalization: what ``images`` are and the network's ``(mean, std)``.
    """
    x = _check_crf_images(images, "images")
    check_input_space(input_space)
    if crf_image not in CRF_IMAGES:
        raise ValueError(f"crf_image must be one of {', '.join(map(repr, CRF_IMAGES))}, got {crf_image!r}")
    mean, std = normalization
    if crf_image == "official":
        official_statistics(normalization)
        sub, wy, wx = _sampled_pixels(x.detach().float(), size)
        # the float32 values the network sees (wsss_kit.clip.CLIPModel.normalize's ops), at the sampled pixels
        return _un_normalise(_bilinear(normalize_input(sub, input_space, mean, std), wy, wx), normalization)
    x = to_unit(x.detach().float(), input_space, mean, std)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    x = (x * 255).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def _check_crf_images(images: object, what: str) -> Tensor:
    check_shape(images, "B 3 H W", what, note="RGB")
    assert isinstance(images, Tensor)  # check_shape raised otherwise
    if not images.is_floating_point():
        raise TypeError(f"{what} must be float RGB, got dtype {images.dtype}")
    return images


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
    *,
    crf_image: str = "official",
    input_space: str = "unit",
    normalization: Stats = IMAGENET,
    backend: str = "pydensecrf",
) -> Tensor:
    """The boundary loss's target ``Q``: a dense CRF of ``max(P, 1e-4)`` on the image, clamped, renormalised.

    The CRF runs over every one of the ``K`` channels (the official code does not restrict it
    to the image's classes), with unary ``-log max(P, 1e-4)`` (not renormalised after the clamp,
    as officially) and the image resized to ``P``'s grid (:func:`images_for_crf`).

    Args:
        probs: ``(B, K, h, w)`` probabilities ``P`` (detached here), with ``h == w``.
        images: ``(B, 3, H, W)``, the images the logits were computed on: RGB in [0, 1], or
            normalised with ``normalization`` when ``input_space="normalized"``.
        params: a CRF parameter set (name, mapping or :class:`~wsss_kit.crf.CRFParams`); the
            official ``weakclip_loss`` is Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13
            compat 10.
        iterations: mean-field iterations (official 10); ``None`` keeps the set's.
        workers: ``"auto"`` = one process per available CPU core (at most ``B``), ``0`` = serial
            in this process (the official behaviour), ``n`` = ``n`` processes.
        pool: a :class:`~wsss_kit.crf.CRFPool` to use instead of the shared one (``workers`` is
            then ignored).
        crf_image, input_space, normalization: how the uint8 CRF image is made from ``images``
            (:func:`images_for_crf`; ``"official"``: bit-equal to the official code's).
        backend: ``"pydensecrf"`` (the reference, worker processes), ``"torch"`` (the batch at
            once on ``probs``' device, :func:`wsss_kit.crf.dense_crf_torch`; ``workers`` and
            ``pool`` are then unused) or ``"auto"`` (torch on CUDA).

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
    resolved = _resolve_params(params, iterations)
    settings = resolved.as_tuple()
    images_u8 = images_for_crf(images, height, crf_image=crf_image, input_space=input_space,
                               normalization=normalization)
    if resolve_backend(backend, probs.device) == "torch":
        rgb = torch.from_numpy(images_u8).permute(0, 3, 1, 2).to(probs.device)
        q_t = dense_crf_torch(probs.detach().float().clamp_min(CRF_MIN_PROB), rgb, resolved).double()
        q_t = q_t.clamp_min(CRF_MIN_PROB)
        return (q_t / q_t.sum(1, keepdim=True)).to(dtype=probs.dtype)
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
    *,
    crf_image: str = "official",
    input_space: str = "unit",
    normalization: Stats = IMAGENET,
    backend: str = "pydensecrf",
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
        images: ``(B, 3, H, W)`` of the same view: RGB in [0, 1], or normalised with
            ``normalization`` when ``input_space="normalized"``.
        size: side of the loss grid (official 64).
        params, iterations, workers, pool, backend: the CRF, see :func:`crf_targets`.
        crf_image, input_space, normalization: the CRF image (:func:`images_for_crf`; the default
            ``"official"`` is the official code's, bit for bit).

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
        check_same_view("the image", (images.shape[-2], images.shape[-1]),
                        "the logits", (logits.shape[-2], logits.shape[-1]))
    probs = dsrg_probabilities(logits, size)
    q = crf_targets(probs, images, params, iterations, workers, pool, crf_image=crf_image, input_space=input_space,
                    normalization=normalization, backend=backend)
    return boundary_loss_from_crf(probs, q)


class CRFBoundaryLoss(wsss_kit.Loss):
    """Module form of :func:`crf_boundary_loss` (paper Eq. 13).

    ``forward(logits (B, K, h, w), images (B, 3, H, W)) -> scalar`` (images in [0, 1], or
    normalised with ``normalization`` when ``input_space="normalized"``). The CRF parameters are
    resolved when the module is built (an unknown set name fails here).
    """

    wsss_api_version = "1.0"

    def __init__(
        self,
        size: int = DEFAULT_LOSS_SIZE,
        params: str | CRFParams | dict[str, Any] | None = "weakclip_loss",
        iterations: int | None = 10,
        workers: Workers = "auto",
        crf_image: str = "official",
        input_space: str = "unit",
        normalization: Stats = IMAGENET,
        backend: str = "pydensecrf",
    ) -> None:
        super().__init__()
        resolve_backend(backend)  # an unknown name fails here, listing the valid ones
        self.backend = backend
        if crf_image not in CRF_IMAGES:
            raise ValueError(f"crf_image must be one of {', '.join(map(repr, CRF_IMAGES))}, got {crf_image!r}")
        self.crf_image, self.input_space = crf_image, check_input_space(input_space)
        official_statistics(normalization)  # checked here, not at the first batch
        self.normalization = normalization
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer (the loss grid side), got {size!r}")
        _workers_arg(workers)
        self.size = size
        self.crf_params = _resolve_params(params, iterations)
        self.workers = workers

    def forward(self, logits: Tensor, images: Tensor) -> Tensor:
        return crf_boundary_loss(logits, images, self.size, self.crf_params, None, self.workers,
                                 crf_image=self.crf_image, input_space=self.input_space,
                                 normalization=self.normalization, backend=self.backend)

    def extra_repr(self) -> str:
        p = self.crf_params
        return (
            f"size={self.size}, gaussian=({p.gauss_sxy:g}, {p.gauss_compat:g}), bilateral=("
            f"{p.bilateral_sxy:g}, {p.bilateral_srgb:g}, {p.bilateral_compat:g}), "
            f"iterations={p.iterations}, workers={self.workers!r}, crf_image={self.crf_image!r}, "
            f"input_space={self.input_space!r}, backend={self.backend!r}"
        )
