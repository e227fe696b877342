"""Training targets of the affinity refiners from CAMs: confident foreground / background regions
and an unlabelled band, by two dense-CRF runs per image.

Both return int64 ``(H, W)`` maps: 0 = background, ``k`` = foreground class ``k`` (1..C), 255 =
unlabelled; a class absent from ``labels`` never appears. CAMs are first normalised per class by
their maximum (``cam / (max + 1e-5)``, as all three official codes store them).

* PSA / MCTformer (jiwoon-ahn/psa ``infer_cls.py`` ``_crf_with_alpha``, the same in MCTformer):
  scores ``[bg, CAMs of the present classes]`` with ``bg = (1 − max_c CAM)^α``, a dense CRF
  (``tool/imutils.py`` ``crf_inference``: unary ``−log`` of the scores clipped at 1e-5, Gaussian
  sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10, 10 iterations — the core set ``"psa"``) for
  a low and a high α (MCTformer 1 / 12, PSA 4 / 32); ``la``/``ha`` = argmax; the label is ``la``,
  255 where ``la`` is background, 0 where ``ha`` is background
  (:func:`confident_regions`). Background wins over the low-α foreground.
* IRN (jiwoon-ahn/irn ``step/cam_to_ir_label.py``, ``misc/imutils.py`` ``crf_inference_label``):
  ``fg = argmax [conf_fg_threshold, CAMs]`` and ``bg = argmax [conf_bg_threshold, CAMs]``, each a
  hard label map smoothed by a label-unary CRF (:func:`label_crf`: probability 0.7 to the given
  label, the rest shared; Gaussian sxy 3 compat 3, bilateral sxy 50 srgb 5 compat 10, 10
  iterations); the label is ``fg``, 255 where ``fg`` is background, 0 where both are background.
  A foreground label is kept even where ``bg`` says background (the opposite precedence to PSA's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsss_kit import IGNORE_INDEX
from wsss_kit.cam_ops import normalize_cams
from wsss_kit.crf import (
    CRFParams,
    dense_crf,
    dense_crf_torch,
    get_params,
    images_to_uint8,
    resolve_backend,
    seeds_to_probs,
)

__all__ = ["IRN_LABEL_CRF", "confident_regions", "irn_confident_regions", "irn_relation_labels", "label_crf",
           "normalise_cams", "psa_relation_labels"]

IRN_LABEL_CRF = CRFParams(3, 3, 50, 5, 10, 10)
"""IRN's ``crf_inference_label`` kernels: Gaussian (3, 3), bilateral (50, 5, 10), 10 iterations."""


def _check(image: Tensor, cams: Tensor, labels: Tensor) -> None:
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(f"image must be float (3, H, W) in [0, 1], got {image.dtype} {tuple(image.shape)}")
    if cams.dim() != 3 or tuple(cams.shape[1:]) != tuple(image.shape[1:]) or not cams.is_floating_point():
        raise ValueError(f"cams must be float (C, H, W) at the image size {tuple(image.shape[1:])}, "
                         f"got {cams.dtype} {tuple(cams.shape)}")
    if labels.dim() != 1 or labels.shape[0] != cams.shape[0]:
        raise ValueError(f"labels must be ({cams.shape[0]},) for {cams.shape[0]} CAMs, got {tuple(labels.shape)}")


def normalise_cams(cams: Tensor, labels: Tensor) -> Tensor:
    """``(C, H, W)`` → ReLU, divided per class by ``max + 1e-5`` (:func:`wsss_kit.cam_ops.normalize_cams`);
    absent classes set to 0."""
    present = (torch.as_tensor(labels).to(cams.device) > 0).float()[:, None, None]
    return normalize_cams((cams.float().clamp_min(0) * present)[None], "max", eps=1e-5)[0]


def _prepare(image: Tensor, cams: Tensor, labels: Tensor, normalize: bool,
             crf_params: Any) -> tuple[Tensor, Tensor, np.ndarray, CRFParams]:
    """What both label makers start from: ``ids`` ``(1 + n,)`` (0 and the present classes' labels),
    their CAMs ``(n, H, W)`` on the CPU, the image as uint8 ``(H, W, 3)`` and the CRF parameters."""
    _check(image, cams, labels)
    present = (torch.as_tensor(labels) > 0).nonzero().flatten().cpu()
    fg = (normalise_cams(cams, labels) if normalize else cams.float()).cpu()[present]
    ids = torch.cat([torch.zeros(1, dtype=torch.long), present + 1])
    return ids, fg, images_to_uint8(image[None])[0], get_params(crf_params)


def _crf_argmax(rgb: np.ndarray, probs: Tensor, params: Any, backend: str = "pydensecrf",
                device: torch.device | str | None = None) -> Tensor:
    """Argmax ``(H, W)`` (CPU) of a dense CRF over ``probs`` ``(K, H, W)`` (no CRF for ``K = 1``); the
    torch backend runs on ``device`` (default: ``probs``')."""
    if probs.shape[0] == 1:
        return torch.zeros(probs.shape[1:], dtype=torch.long)
    device = probs.device if device is None else torch.device(device)
    if resolve_backend(backend, device) == "torch":
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device)
        return dense_crf_torch(probs.detach()[None].float().to(device), image, params)[0].argmax(dim=0).cpu()
    q = dense_crf(rgb, probs.detach().cpu().float().numpy(), params)
    return torch.from_numpy(q).argmax(dim=0)


def label_crf(rgb: np.ndarray, label_map: Tensor, n_labels: int, gt_prob: float = 0.7,
              params: Any = IRN_LABEL_CRF, backend: str = "pydensecrf",
              device: torch.device | str | None = None) -> Tensor:
    """A dense CRF on a hard label map (IRN's ``crf_inference_label``, pydensecrf's ``unary_from_labels``).

    Args:
        rgb: ``uint8 (H, W, 3)``.
        label_map: int ``(H, W)`` in ``0 … n_labels − 1``.
        gt_prob: probability of the given label; the other labels share ``1 − gt_prob``.
        backend, device: the dense-CRF backend (``pydensecrf``, ``torch``, ``auto``; see
            :func:`wsss_kit.crf.resolve_backend`) and where the torch one runs.

    Returns:
        int64 ``(H, W)``: the CRF's argmax.
    """
    if int(label_map.min()) < 0 or int(label_map.max()) >= n_labels:
        raise ValueError(f"label_map values must be in 0..{n_labels - 1}, got {int(label_map.min())}.."
                         f"{int(label_map.max())}")
    if n_labels == 1:
        return torch.zeros(label_map.shape, dtype=torch.long)
    # the soft one-hot of the core's seeds_to_probs gives -log unaries equal to unary_from_labels'
    probs = seeds_to_probs(label_map[None].long(), torch.ones(1, n_labels - 1), confidence=gt_prob)[0]
    return _crf_argmax(rgb, probs, params, backend, device)


def psa_relation_labels(image: Tensor, cams: Tensor, labels: Tensor, alpha_low: float = 1.0,
                        alpha_high: float = 12.0, crf_params: Any = "psa", normalize: bool = True,
                        crf_backend: str = "pydensecrf") -> Tensor:
    """PSA / MCTformer's AffinityNet training labels (see the module docstring).

    Args:
        image: float ``(3, H, W)`` in [0, 1]. cams: float ``(C, H, W)`` foreground CAMs.
        labels: ``(C,)`` 0/1. alpha_low, alpha_high: MCTformer 1 / 12, PSA 4 / 32.
        crf_params: a core CRF parameter set (``"psa"``: (3, 3) / (80, 13, 10), 10 iterations).
        normalize: divide each CAM by its maximum first.
        crf_backend: ``"pydensecrf"`` (the reference), ``"torch"`` (on ``cams``' device) or ``"auto"``.

    Returns:
        int64 ``(H, W)``: 0 background, 1..C foreground, 255 unlabelled; on ``cams``' device.
    """
    if not 0 < float(alpha_low) <= float(alpha_high):
        raise ValueError(f"need 0 < alpha_low <= alpha_high, got {alpha_low}, {alpha_high}")
    ids, fg, rgb, params = _prepare(image, cams, labels, normalize, crf_params)
    peak = fg.amax(dim=0, keepdim=True) if len(fg) else torch.zeros(1, *cams.shape[1:])
    maps = [ids[_crf_argmax(rgb, torch.cat([(1 - peak).clamp_min(0).pow(float(a)), fg]), params, crf_backend,
                            cams.device)]
            for a in (alpha_low, alpha_high)]
    return confident_regions(maps[0][None], maps[1][None])[0].to(cams.device)


def irn_relation_labels(image: Tensor, cams: Tensor, labels: Tensor, conf_fg_threshold: float = 0.30,
                        conf_bg_threshold: float = 0.05, crf_params: Any = IRN_LABEL_CRF, gt_prob: float = 0.7,
                        normalize: bool = True, crf_backend: str = "pydensecrf") -> Tensor:
    """IRN's inter-pixel relation labels (``cam_to_ir_label``; see the module docstring).

    Args:
        image: float ``(3, H, W)`` in [0, 1]. cams: float ``(C, H, W)``. labels: ``(C,)`` 0/1.
        conf_fg_threshold, conf_bg_threshold: IRN 0.30 / 0.05, CLIMS 0.3 / 0.1.
        crf_params, gt_prob: the label CRF (:data:`IRN_LABEL_CRF`, 0.7).
        normalize: divide each CAM by its maximum first (IRN's ``high_res`` CAMs are).
        crf_backend: ``"pydensecrf"`` (the reference), ``"torch"`` (on ``cams``' device) or ``"auto"``.

    Returns:
        int64 ``(H, W)``: 0 background, 1..C foreground, 255 unlabelled; on ``cams``' device.
    """
    if not 0 <= float(conf_bg_threshold) <= float(conf_fg_threshold):
        raise ValueError(f"need 0 <= conf_bg_threshold <= conf_fg_threshold, got {conf_bg_threshold}, "
                         f"{conf_fg_threshold}")
    keys, fg_cams, rgb, params = _prepare(image, cams, labels, normalize, crf_params)

    def confident(threshold: float) -> Tensor:
        scores = torch.cat([torch.full((1, *cams.shape[1:]), float(threshold)), fg_cams])
        return keys[label_crf(rgb, scores.argmax(dim=0), len(keys), gt_prob, params, crf_backend, cams.device)]

    return irn_confident_regions(confident(conf_fg_threshold), confident(conf_bg_threshold)).to(cams.device)


def confident_regions(low_alpha_labels: Tensor, high_alpha_labels: Tensor,
                      ignore_index: int = IGNORE_INDEX) -> Tensor:
    """PSA's affinity training labels from two CRF label maps (int64 ``(B, H, W)``, 0 = background).

    ``low_alpha_labels``: argmax of the CRF with the *larger* background score (small α, MCTformer
    α = 1); ``high_alpha_labels``: the smaller one (α = 12). Foreground is kept where even the
    low-α map says foreground, background where even the high-α map says background; the rest is
    ``ignore_index``.
    """
    if low_alpha_labels.shape != high_alpha_labels.shape:
        raise ValueError(f"the two label maps differ in shape: {tuple(low_alpha_labels.shape)} "
                         f"vs {tuple(high_alpha_labels.shape)}")
    out = low_alpha_labels.clone()
    out[low_alpha_labels == 0] = ignore_index
    out[high_alpha_labels == 0] = 0
    return out


def irn_confident_regions(fg_labels: Tensor, bg_labels: Tensor, ignore_index: int = 255) -> Tensor:
    """IRN's combination of its two CRF label maps (int64, any equal shapes, 0 = background).

    ``fg_labels``: from the high ``conf_fg_threshold``; ``bg_labels``: from the low
    ``conf_bg_threshold``. The label is ``fg_labels``; ``ignore_index`` where it is background,
    0 where both are. Unlike :func:`confident_regions` (PSA), a foreground
    label survives where ``bg_labels`` says background.
    """
    if fg_labels.shape != bg_labels.shape:
        raise ValueError(f"the two label maps differ in shape: {tuple(fg_labels.shape)} vs {tuple(bg_labels.shape)}")
    out = fg_labels.clone()
    out[fg_labels == 0] = ignore_index
    out[(fg_labels == 0) & (bg_labels == 0)] = 0
    return out
