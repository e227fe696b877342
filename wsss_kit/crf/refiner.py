"""The ``dense_crf`` refiner: CAMs or seed masks → CRF-refined class probabilities."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from ..interfaces import IGNORE_INDEX, Refiner
from ..shapes import check_shape
from .dense_crf import DEFAULT_MIN_PROB
from .params import CRFParams, get_params
from .pool import check_workers, dense_crf_batch
from .torch_crf import dense_crf_torch, resolve_backend

__all__ = ["DenseCRF", "cams_to_probs", "images_to_uint8", "seeds_to_probs"]


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` float in [0, 1] → ``uint8 (B, H, W, 3)`` numpy (values clipped)."""
    check_shape(images, "B 3 H W", "images")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    x = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())


def cams_to_probs(
    cams: torch.Tensor, labels: torch.Tensor, bg_threshold: float | None = None, bg_power: float = 1.0
) -> torch.Tensor:
    """Class probabilities ``(B, C+1, H, W)`` from CAMs ``(B, C, H, W)`` in [0, 1].

    Background score = ``bg_threshold`` if given, else ``(1 - max_c cam_c) ** bg_power`` (PSA's
    rule; α = 1 and α = 12 give its low/high-confidence labels). Classes absent from ``labels``
    get 0; scores are normalised over the present classes (uniform where they are all 0).
    """
    present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0  # (B, C+1)
    fg = cams.float().clamp(0, 1) * present[:, 1:, None, None]
    if bg_threshold is not None:
        bg = torch.full_like(fg[:, :1], float(bg_threshold))
    else:
        bg = (1 - fg.amax(dim=1, keepdim=True)).pow(bg_power) if fg.shape[1] else torch.ones_like(fg[:, :1, :, :])
    scores = torch.cat([bg, fg], dim=1) * present[:, :, None, None]
    total = scores.sum(dim=1, keepdim=True)
    uniform = present[:, :, None, None].float() / present.sum(1).float()[:, None, None, None]
    return torch.where(total > 0, scores / total.clamp_min(1e-12), uniform.expand_as(scores))


def seeds_to_probs(seeds: torch.Tensor, labels: torch.Tensor, confidence: float = 0.7) -> torch.Tensor:
    """Soft one-hot probabilities ``(B, C+1, H, W)`` from seed masks ``(B, H, W)``.

    The seed class gets ``confidence``, the other present classes share the rest; ignored pixels
    (255) are uniform over the present classes; absent classes get 0.

    Raises:
        ValueError: a seed value outside 0..C and not 255, or a class missing from ``labels``
            (naming the image and the class).
    """
    b, c = labels.shape
    present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0  # (B, C+1)
    seeds = seeds.long()
    valid = seeds != IGNORE_INDEX
    bad = valid & ((seeds < 0) | (seeds > c))
    if bool(bad.any()):
        vals = torch.unique(seeds[bad]).tolist()[:8]
        raise ValueError(f"seed masks hold values outside 0..{c} that are not {IGNORE_INDEX}: {vals}")
    safe = torch.where(valid, seeds, torch.zeros_like(seeds))
    seen = torch.zeros(b, c + 1, dtype=torch.bool, device=seeds.device)
    seen.scatter_(1, safe.reshape(b, -1), valid.reshape(b, -1))
    stray = seen & ~present
    if bool(stray.any()):
        i, k = (int(v) for v in stray.nonzero()[0])
        classes = present[i].nonzero().flatten().tolist()
        raise ValueError(
            f"seed mask of image {i} contains class {k}, which its labels do not have (present: {classes})")
    n_present = present.sum(1).float()[:, None, None, None]  # (B,1,1,1)
    others = torch.where(n_present > 1, (1 - confidence) / (n_present - 1).clamp_min(1), torch.zeros_like(n_present))
    onehot = torch.nn.functional.one_hot(safe, c + 1).permute(0, 3, 1, 2).float()
    mask = present[:, :, None, None].float()
    seeded = torch.where(onehot > 0, torch.full_like(onehot, confidence), others.expand_as(onehot)) * mask
    seeded = torch.where(n_present > 1, seeded, mask.expand_as(seeded))  # only background: certain
    uniform = (mask / n_present).expand_as(seeded)
    return torch.where(valid[:, None], seeded, uniform)


class DenseCRF(Refiner):
    """Dense-CRF refiner (``create("refiners", "dense_crf", params="weakclip_voc")``).

    Only the classes present in an image's labels (and background) enter its CRF; the others
    get probability 0. With ``backend="pydensecrf"`` (the reference) the CRFs of a batch run in
    parallel worker processes; with ``"torch"`` the batch runs at once on the CAMs' device
    (:func:`~wsss_kit.crf.torch_crf.dense_crf_torch`); ``"auto"`` picks torch for CUDA tensors.
    """

    wsss_api_version = "1.0"
    trainable = False

    def __init__(
        self,
        params: str | Mapping[str, Any] | CRFParams = "default",
        iterations: int | None = None,
        bg_threshold: float | None = None,
        bg_power: float = 1.0,
        seed_confidence: float = 0.7,
        workers: int | None = None,
        min_prob: float = DEFAULT_MIN_PROB,
        backend: str = "pydensecrf",
    ) -> None:
        """
        Args:
            params: CRF parameter set name (see :data:`~wsss_kit.crf.params.PARAM_SETS`), a
                mapping or :class:`~wsss_kit.crf.params.CRFParams`.
            iterations: overrides the set's number of mean-field iterations.
            bg_threshold: constant background score for CAM input; ``None`` uses
                ``(1 - max cam) ** bg_power``.
            bg_power: the exponent α of PSA's background score (1 or 12 in PSA/MCTformer).
            seed_confidence: probability of the seed class for seed-mask input, in (0, 1].
            workers: CRF processes; ``None`` = one per CPU core (divided among torchrun's processes on this
                machine), 0 = in this process.
            min_prob: floor applied to probabilities before ``-log``.
            backend: ``"pydensecrf"``, ``"torch"`` or ``"auto"`` (torch on CUDA, pydensecrf on CPU;
                see :func:`~wsss_kit.crf.torch_crf.resolve_backend`).
        """
        resolve_backend(backend)  # an unknown name fails here, listing the valid ones
        self.params = get_params(params) if iterations is None else get_params(params, iterations=iterations)
        if bg_threshold is not None and not 0 <= float(bg_threshold):
            raise ValueError(f"bg_threshold must be >= 0 or None, got {bg_threshold}")
        if not float(bg_power) > 0:
            raise ValueError(f"bg_power must be > 0, got {bg_power}")
        if not 0 < float(seed_confidence) <= 1:
            raise ValueError(f"seed_confidence must be in (0, 1], got {seed_confidence}")
        self.bg_threshold = None if bg_threshold is None else float(bg_threshold)
        self.bg_power = float(bg_power)
        self.seed_confidence = float(seed_confidence)
        self.workers = check_workers(workers)
        self.min_prob = float(min_prob)
        self.backend = backend

    def unaries(self, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The probabilities ``(B, C+1, H, W)`` that enter the CRF (before refinement)."""
        labels = torch.as_tensor(labels).to(cams.device)
        if cams.dim() == 4:
            if not cams.is_floating_point():
                raise ValueError(f"CAMs must be floating point, got {cams.dtype}")
            if tuple(labels.shape) != tuple(cams.shape[:2]):
                raise ValueError(f"labels have shape {tuple(labels.shape)}, expected {tuple(cams.shape[:2])} for CAMs")
            return cams_to_probs(cams, labels, self.bg_threshold, self.bg_power)
        if cams.dim() == 3:
            if cams.is_floating_point():
                raise ValueError(f"seed masks must be integer (B, H, W), got {cams.dtype}")
            check_shape(labels, "B C", "labels", sizes={"B": cams.shape[0]})
            return seeds_to_probs(cams, labels, self.seed_confidence)
        raise ValueError(f"expected CAMs (B, C, H, W) or seed masks (B, H, W), got shape {tuple(cams.shape)}")

    @torch.no_grad()
    def refine(self, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Refine a batch.

        Args:
            images: ``(B, 3, H, W)`` float RGB in [0, 1].
            cams: CAMs ``(B, C, H, W)`` in [0, 1], or seed masks ``int64 (B, H, W)`` (0..C, 255).
            labels: ``(B, C)`` multi-hot.

        Returns:
            ``float32 (B, C+1, H, W)`` on ``cams``' device; sums to 1 over classes, 0 for absent
            classes.
        """
        check_shape(images, "B 3 H W", "images", note="float RGB in [0, 1]")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
        probs = self.unaries(cams, labels)
        if tuple(probs.shape[-2:]) != tuple(images.shape[-2:]) or probs.shape[0] != images.shape[0]:
            raise ValueError(
                f"images are {tuple(images.shape)} but CAMs/seeds are {tuple(cams.shape)}: batch size and "
                f"H x W must agree"
            )
        labels = torch.as_tensor(labels).to(probs.device)
        present = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0  # (B, C+1)
        if resolve_backend(self.backend, probs.device) == "torch":
            # images are quantised to uint8 inside, as images_to_uint8 does for pydensecrf
            return dense_crf_torch(probs, images.to(probs.device), self.params, min_prob=self.min_prob,
                                   valid=present)
        rgb = images_to_uint8(images)
        index = [present[i].nonzero().flatten().cpu() for i in range(probs.shape[0])]
        sub = [probs[i, idx].cpu().numpy() for i, idx in enumerate(index)]
        refined = dense_crf_batch(list(rgb), sub, self.params.as_tuple(), workers=self.workers, min_prob=self.min_prob)
        out = torch.zeros_like(probs, dtype=torch.float32)
        for i, (idx, q) in enumerate(zip(index, refined)):
            out[i, idx.to(out.device)] = torch.from_numpy(q).to(out.device)
        return out

    def __repr__(self) -> str:
        return (
            f"DenseCRF(params={self.params}, bg_threshold={self.bg_threshold}, bg_power={self.bg_power}, "
            f"seed_confidence={self.seed_confidence}, workers={self.workers}, backend={self.backend!r})"
        )
