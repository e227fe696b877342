"""WeakCLIP's balanced seeding loss (paper Eq. 12, DSRG's loss as the official code computes it)."""

from __future__ import annotations

import torch
from torch import Tensor

import wsss_kit
from wsss_kit.interfaces import IGNORE_INDEX

from .loss_inputs import DEFAULT_LOSS_SIZE, check_logits, check_seeds, dsrg_probabilities, seed_cues

__all__ = ["COUNT_FLOOR", "BalancedSeedLoss", "balanced_seed_loss", "balanced_seed_loss_from_probs"]

COUNT_FLOOR = 1e-4
"""Each term's cue count is clamped at this (official), so an image without cues adds 0."""


def balanced_seed_loss_from_probs(probs: Tensor, cues: Tensor) -> Tensor:
    """Eq. 12 on given probabilities and cues (the inner form of :func:`balanced_seed_loss`).

    With ``b`` an image, ``C_b,k`` its cue map of class ``k`` (0 = background) and
    ``n_bg(b) = Σ_u C_b,0(u)``, ``n_fg(b) = Σ_{k≥1} Σ_u C_b,k(u)``:

    .. math::
        L = -\\frac{1}{B}\\sum_b \\frac{\\sum_u C_{b,0}(u)\\log P_{b,0}(u)}{\\max(n_{bg}(b), 10^{-4})}
            -\\frac{1}{B}\\sum_b \\frac{\\sum_{k\\ge1}\\sum_u C_{b,k}(u)\\log P_{b,k}(u)}{\\max(n_{fg}(b), 10^{-4})}

    Args:
        probs: ``(B, K, h, w)`` probabilities, > 0.
        cues: ``(B, K, h, w)`` one-hot cues (0/1), all-zero at ignored pixels.

    Returns:
        a scalar.
    """
    if probs.shape != cues.shape:
        raise ValueError(
            f"probs and cues must have the same shape (B, K, h, w); got {tuple(probs.shape)} "
            f"and {tuple(cues.shape)}"
        )
    cues = cues.to(probs.dtype)
    weighted = cues * torch.log(probs)
    floor = torch.tensor(COUNT_FLOOR, dtype=probs.dtype, device=probs.device)
    bg_sum = weighted[:, 0].sum(dim=(1, 2))
    bg_count = cues[:, 0].sum(dim=(1, 2))
    fg_sum = weighted[:, 1:].sum(dim=(1, 2, 3))
    fg_count = cues[:, 1:].sum(dim=(1, 2, 3))
    background = -(bg_sum / torch.maximum(bg_count, floor)).mean()
    foreground = -(fg_sum / torch.maximum(fg_count, floor)).mean()
    return background + foreground


def balanced_seed_loss(
    logits: Tensor,
    seeds: Tensor,
    size: int = DEFAULT_LOSS_SIZE,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Balanced seeding loss of WeakCLIP (paper Eq. 12), with the official normalisation.

    The logits are resized (bilinear) to ``size × size`` and turned into
    ``P = renorm(softmax + 1e-7)`` (:func:`~wsss_weakclip.loss_inputs.dsrg_probabilities`); the
    seeds are resized (nearest) to the same grid and one-hot encoded into cues, ignored pixels
    excluded (:func:`~wsss_weakclip.loss_inputs.seed_cues`). Per image, the background term is
    the mean of ``-log P_0`` over the background cues and the foreground term the mean of
    ``-log P_k`` over all foreground cues (every class together); each count is clamped at 1e-4,
    so an image without background (or foreground) cues contributes 0 to that term. Each term is
    averaged over the batch (images without cues still count in the ``B``), then the two are
    summed. See :func:`balanced_seed_loss_from_probs` for the formula.

    Differences from the paper's Eq. 12 (see ``docs/paper_vs_code.md``): the paper's background
    term reads ``Σ P`` without a logarithm (the code, like DSRG, uses ``log P``), and the paper
    does not say that the normalisation is per image.

    Args:
        logits: ``(B, K, h, w)`` decoder logits, channel 0 = background (any float dtype; the
            loss is computed in float32, or float64 for float64 logits).
        seeds: ``(B, H, W)`` int64 seed mask of the same image (any resolution with the same
            aspect ratio), class ids ``0..K-1``, ``ignore_index`` for unlabelled pixels.
        size: side of the loss grid (official 64).
        ignore_index: the mask's ignore value (255).

    Returns:
        a scalar tensor attached to ``logits``' graph.

    Raises:
        TypeError: a non-tensor, non-float logits or non-integer seeds.
        ValueError: bad shapes, a batch-size or aspect-ratio mismatch (naming both sizes), or a
            seed class id outside ``0..K-1``.
    """
    logits = check_logits(logits)
    batch, num_classes = logits.shape[:2]
    seeds = check_seeds(seeds, num_classes, batch, (logits.shape[-2], logits.shape[-1]), "the logits", ignore_index)
    probs = dsrg_probabilities(logits, size)
    cues = seed_cues(seeds, num_classes, size, ignore_index)
    return balanced_seed_loss_from_probs(probs, cues)


class BalancedSeedLoss(wsss_kit.Loss):
    """Module form of :func:`balanced_seed_loss` (paper Eq. 12).

    ``forward(logits (B, K, h, w), seeds (B, H, W) int64) -> scalar``.
    """

    wsss_api_version = "1.0"

    def __init__(self, size: int = DEFAULT_LOSS_SIZE, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer (the loss grid side), got {size!r}")
        self.size = size
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, seeds: Tensor) -> Tensor:
        return balanced_seed_loss(logits, seeds, self.size, self.ignore_index)

    def extra_repr(self) -> str:
        return f"size={self.size}, ignore_index={self.ignore_index}"
