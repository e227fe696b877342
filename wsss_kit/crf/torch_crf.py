"""Batched fully connected CRF in PyTorch (``backend="torch"``), on CPU and CUDA.

The same model and inference as pydensecrf's ``DenseCRF2D`` with ``addPairwiseGaussian`` and
``addPairwiseBilateral`` (diagonal kernels, symmetric normalisation, Potts compatibility), which
:func:`wsss_kit.crf.dense_crf.dense_crf` runs:

* unary ``U = -log(max(p, min_prob))``; ``Q = softmax(-U)`` over classes;
* kernels on the features ``(x/sxy, y/sxy)`` and ``(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)``
  (x = column, y = row, uint8 RGB), each filtered by a permutohedral lattice
  (:class:`~wsss_kit.crf.permutohedral.PermutohedralLattice`) and normalised symmetrically:
  ``K Q = n ⊙ lattice(n ⊙ Q)`` with ``n = 1 / sqrt(lattice(1) + 1e-20)``; the lattice includes
  each pixel's own contribution, as densecrf's does;
* ``iterations`` mean-field steps ``Q ← softmax(-U + w_g K_g Q + w_b K_b Q)`` (Potts: the message
  to label ``l`` is ``w K Q_l``), both kernels applied to the same ``Q``.

Labels agree with pydensecrf on ≥ 98% of pixels for every named parameter set (tested); the
remaining differences come from float rounding in the lattice and the summation order.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..shapes import check_shape
from .dense_crf import DEFAULT_MIN_PROB
from .params import CRFParams, get_params
from .permutohedral import PermutohedralLattice

__all__ = ["BACKENDS", "DenseCRFTorch", "dense_crf_torch", "dense_crf_torch_batch", "resolve_backend"]

BACKENDS = ("pydensecrf", "torch", "auto")
"""Valid ``backend`` values of the dense CRF: pydensecrf (the reference, CPU worker processes),
torch (this module, batched, CPU or CUDA), auto (torch for CUDA tensors, else pydensecrf; torch
when pydensecrf is not installed)."""


def resolve_backend(backend: str, device: torch.device | str | None = None) -> str:
    """``"pydensecrf"`` or ``"torch"`` for a ``backend`` value and the device the CRF's inputs are on.

    ``auto``: torch on CUDA; on CPU pydensecrf (measured faster there, see
    ``benchmarks/results/crf_speed.json``), or torch when pydensecrf is not installed.

    Raises:
        ValueError: an unknown backend, listing the valid ones.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown dense CRF backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if device is not None and torch.device(device).type == "cuda":
        return "torch"
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return "torch"
    return "pydensecrf"


def _image_features(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` uint8 or float in [0, 1] → ``float32 (B, 3, H, W)`` values 0..255 (as uint8)."""
    if images.dtype == torch.uint8:
        return images.float()
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}")
    # The pydensecrf path quantises the same way (wsss_kit.crf.refiner.images_to_uint8).
    return (images.detach().float() * 255).round().clamp(0, 255)


def _positions(h: int, w: int, device: torch.device) -> Tensor:
    """``float32 (H·W, 2)``: ``(column, row)`` of each pixel, row-major (densecrf's ``j*W + i``)."""
    x = torch.arange(w, device=device, dtype=torch.float32)[None, :].expand(h, w)
    y = torch.arange(h, device=device, dtype=torch.float32)[:, None].expand(h, w)
    return torch.stack([x, y], -1).reshape(h * w, 2)


def _bilateral_features(rgb: Tensor, params: CRFParams) -> Tensor:
    """``float32 (H·W·B, 5)``: ``(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)``, pixel-major then image."""
    b, _, h, w = rgb.shape
    f32 = torch.float32
    sxy = torch.tensor(params.bilateral_sxy, dtype=f32, device=rgb.device)  # float32 like densecrf's arguments
    srgb = torch.tensor(params.bilateral_srgb, dtype=f32, device=rgb.device)
    pos = (_positions(h, w, rgb.device) / sxy)[:, None, :].expand(h * w, b, 2)
    colour = rgb.permute(2, 3, 0, 1).reshape(h * w, b, 3) / srgb
    return torch.cat([pos, colour], -1).reshape(h * w * b, 5)


class _Kernel:
    """One normalised Potts kernel of weight ``w`` over a lattice of ``R`` points:
    ``add_message(E, Q)``: ``E += w n ⊙ lattice(n ⊙ Q)`` with ``Q``, ``E`` viewed as ``(R, ·)``.

    The Gaussian kernel's lattice holds the ``H·W`` pixel positions once and filters the images of a
    batch as extra channels (``(H·W, B·C)``: the points are pixel-major, image-minor); the
    bilateral one holds every pixel of every image (``(H·W·B, C)``), images kept apart by groups.
    """

    def __init__(self, lattice: PermutohedralLattice, rows: int, weight: float) -> None:
        self.lattice, self.rows = lattice, rows
        ones = torch.ones(rows, 1, device=lattice.offsets.device)
        self.norm = 1.0 / torch.sqrt(lattice.filter(ones) + 1e-20)  # (R, 1)
        self.out_scale = self.norm * float(weight)  # the weight folded in: one pass less per iteration

    def add_message(self, energy: Tensor, q: Tensor) -> None:
        filtered = self.lattice.filter(q.view(self.rows, -1) * self.norm)
        energy.view(self.rows, -1).addcmul_(filtered, self.out_scale)


def _kernels(rgb: Tensor, params: CRFParams) -> list[_Kernel]:
    """The Gaussian and bilateral kernels of a batch ``(B, 3, H, W)`` (0..255 float), zero weights left out."""
    b, _, h, w = rgb.shape
    kernels = []
    if params.gauss_compat:  # a zero-weight kernel adds nothing (pydensecrf adds 0)
        sxy = torch.tensor(params.gauss_sxy, dtype=torch.float32, device=rgb.device)
        lattice = PermutohedralLattice.build(_positions(h, w, rgb.device) / sxy)
        kernels.append(_Kernel(lattice, h * w, params.gauss_compat))
    if params.bilateral_compat:
        groups = torch.arange(b, device=rgb.device).repeat(h * w)
        lattice = PermutohedralLattice.build(_bilateral_features(rgb, params), groups)
        kernels.append(_Kernel(lattice, h * w * b, params.bilateral_compat))
    return kernels


def _check_inputs(unary_probs: Tensor, images: Tensor, valid: Tensor | None) -> dict[str, int]:
    sizes = check_shape(unary_probs, "B C H W", "unary_probs", note="class probabilities >= 0")
    if not unary_probs.is_floating_point():
        raise ValueError(f"unary_probs must be floating point, got dtype {unary_probs.dtype}")
    check_shape(images, "B 3 H W", "images", sizes={k: sizes[k] for k in ("B", "H", "W")},
                note="RGB, uint8 or float in [0, 1]")
    if images.device != unary_probs.device:
        raise ValueError(f"images are on {images.device} but unary_probs on {unary_probs.device}")
    if not bool(torch.isfinite(unary_probs).all()) or bool((unary_probs < 0).any()):
        raise ValueError("unary_probs must be finite and >= 0")
    if valid is not None:
        check_shape(valid, "B C", "valid", sizes={"B": sizes["B"], "C": sizes["C"]}, note="bool")
        if valid.dtype != torch.bool:
            raise ValueError(f"valid must be a bool (B, C) mask, got dtype {valid.dtype}")
        if not bool(valid.any(1).all()):
            empty = (~valid.any(1)).nonzero().flatten().tolist()
            raise ValueError(f"valid leaves no class for images {empty}; each image needs at least one")
    return sizes


def dense_crf_torch(
    unary_probs: Tensor,
    images: Tensor,
    params: str | Mapping[str, Any] | CRFParams | None = "default",
    iterations: int | None = None,
    *,
    min_prob: float = DEFAULT_MIN_PROB,
    valid: Tensor | None = None,
) -> Tensor:
    """Fully connected CRF over a batch, on the inputs' device (see the module docstring).

    Args:
        unary_probs: ``float (B, C, H, W)`` class probabilities (>= 0; a per-pixel scale does not
            change the result beyond the ``min_prob`` clamp).
        images: ``(B, 3, H, W)`` RGB, uint8 0..255, or float in [0, 1] (quantised to uint8 as the
            pydensecrf path does).
        params: a parameter-set name, mapping or :class:`~wsss_kit.crf.params.CRFParams`
            (:func:`~wsss_kit.crf.params.get_params`).
        iterations: mean-field iterations; ``None`` takes the set's.
        min_prob: floor of the probabilities before ``-log``.
        valid: optional ``bool (B, C)``: the classes that enter each image's CRF; the others get
            probability 0 (as if they were left out of pydensecrf's input).

    Returns:
        ``float32 (B, C, H, W)`` marginals, summing to 1 over classes, on the inputs' device.

    Raises:
        ValueError: wrong shapes/dtypes, sizes or devices that disagree, negative or non-finite
            probabilities, a ``valid`` row without a class, ``iterations`` < 0.
        ConfigError: unknown parameter set or field.
    """
    resolved = get_params(params) if iterations is None else get_params(params, iterations=iterations)
    sizes = _check_inputs(unary_probs, images, valid)
    b, c, h, w = sizes["B"], sizes["C"], sizes["H"], sizes["W"]
    if h * w == 0:
        raise ValueError(f"unary_probs have an empty image ({h}x{w})")
    # float32 throughout, also inside a caller's autocast region (the boundary loss of a bf16/fp16
    # training step): autocast would run the lattice's matrix products in half precision
    with torch.no_grad(), torch.autocast(unary_probs.device.type, enabled=False):
        probs = unary_probs.detach().float()
        # (P, C) with P = H·W·B: pixels row-major (densecrf's j*W + i), the images of a pixel together
        neg_unary = torch.log(probs.clamp_min(float(min_prob))).permute(2, 3, 0, 1).reshape(-1, c)
        if valid is not None:
            mask = valid.to(probs.device)[None, None].expand(h, w, b, c).reshape(-1, c)
            neg_unary = neg_unary.masked_fill(~mask, float("-inf"))
        q = torch.softmax(neg_unary, 1)
        if resolved.iterations > 0 and c > 1:
            kernels = _kernels(_image_features(images), resolved)
            for _ in range(resolved.iterations):
                energy = neg_unary.clone()
                for kernel in kernels:
                    kernel.add_message(energy, q)
                q = torch.softmax(energy, 1)
        if c == 1:
            q = torch.ones_like(q)
        return q.reshape(h, w, b, c).permute(2, 3, 0, 1).contiguous()


class DenseCRFTorch(nn.Module):
    """:func:`dense_crf_torch` with its parameter set held: ``DenseCRFTorch("weakclip_voc")(probs, images)``."""

    def __init__(self, params: str | Mapping[str, Any] | CRFParams | None = "default",
                 iterations: int | None = None, min_prob: float = DEFAULT_MIN_PROB) -> None:
        super().__init__()
        self.params = get_params(params) if iterations is None else get_params(params, iterations=iterations)
        self.min_prob = float(min_prob)

    def forward(self, unary_probs: Tensor, images: Tensor, valid: Tensor | None = None) -> Tensor:
        """``(B, C, H, W)`` probabilities and ``(B, 3, H, W)`` images → ``float32 (B, C, H, W)``."""
        return dense_crf_torch(unary_probs, images, self.params, min_prob=self.min_prob, valid=valid)

    def extra_repr(self) -> str:
        return f"params={self.params}, min_prob={self.min_prob}"


def dense_crf_torch_batch(
    images: Sequence[np.ndarray],
    probs: Sequence[np.ndarray],
    params: str | Mapping[str, Any] | CRFParams | tuple | None = "default",
    min_prob: float = DEFAULT_MIN_PROB,
    device: torch.device | str | None = None,
) -> list[np.ndarray]:
    """The torch backend of :func:`~wsss_kit.crf.dense_crf_batch`: numpy in, numpy out.

    Images of the same size and class count run as one batch on ``device`` (default CPU).

    Args:
        images: ``N`` arrays ``uint8 (H_i, W_i, 3)``.
        probs: ``N`` arrays ``float (K_i, H_i, W_i)``.
        params: a set name, mapping, :class:`CRFParams` or its ``as_tuple()``.

    Returns:
        ``N`` arrays ``float32 (K_i, H_i, W_i)`` in input order.
    """
    if isinstance(params, tuple):
        fields = ("gauss_sxy", "gauss_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat", "iterations")
        if len(params) != len(fields):
            raise ValueError(f"CRF settings must be 6 numbers (see CRFParams.as_tuple), got {params!r}")
        params = CRFParams(**dict(zip(fields, (*params[:5], int(params[5])))))
    resolved = get_params(params)
    if len(images) != len(probs):
        raise ValueError(f"got {len(images)} images but {len(probs)} probability maps")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(probs):
        groups.setdefault(tuple(np.shape(p)), []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(images)
    for indices in groups.values():
        rgb = torch.from_numpy(np.stack([np.asarray(images[i]) for i in indices])).permute(0, 3, 1, 2).to(dev)
        q = torch.from_numpy(np.stack([np.asarray(probs[i], dtype=np.float32) for i in indices])).to(dev)
        refined = dense_crf_torch(q, rgb, resolved, min_prob=min_prob).cpu().numpy()
        for j, i in enumerate(indices):
            out[i] = refined[j]
    return out


def _dense_crf_backend(image: np.ndarray, probs: np.ndarray, settings: Any, min_prob: float,
                       backend: str) -> np.ndarray | None:
    """:func:`wsss_kit.crf.dense_crf`'s hook for ``backend != "pydensecrf"`` (``None``: use pydensecrf)."""
    if resolve_backend(backend, "cpu") == "torch":
        return dense_crf_torch_batch([image], [probs], settings, min_prob)[0]
    return None


# the module itself (the package's attribute ``dense_crf`` is the function of that name)
setattr(sys.modules[__name__.rsplit(".", 1)[0] + ".dense_crf"], "_other_backends", _dense_crf_backend)
