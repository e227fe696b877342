"""WeakCLIP's training losses (DSRG-style, as in the official code), each a function and a module.

=====================  ===============================  ==========================================
loss                   function                         module (entry point ``wsss_kit.losses``)
=====================  ===============================  ==========================================
balanced seeding       :func:`balanced_seed_loss`       :class:`BalancedSeedLoss` (``balanced_seed``)
boundary (CRF KL)      :func:`crf_boundary_loss`        :class:`CRFBoundaryLoss` (``crf_boundary``)
score-map auxiliary    :func:`score_map_loss`           :class:`ScoreMapLoss`
=====================  ===============================  ==========================================

Official total: ``1 · seeding + 1 · boundary + 0.4 · score_map``; the weights belong to the
refiner's configuration, not to these losses. Seeding and boundary losses are computed on the
1/4-resolution logits resized to 64 × 64; the score-map loss on ``score_map / 0.07`` resized to
the seed mask. Where the paper's Eqs. 12 and 13 and the code differ: ``docs/paper_vs_code.md``.
"""

from __future__ import annotations

from .boundary_loss import (
    CRF_IMAGES,
    CRF_MIN_PROB,
    RATIO_RANGE,
    CRFBoundaryLoss,
    boundary_loss_from_crf,
    crf_boundary_loss,
    crf_targets,
    images_for_crf,
    official_crf_images,
)
from .loss_inputs import DEFAULT_LOSS_SIZE, DSRG_MIN_PROB, dsrg_probabilities, seed_cues
from .score_map_loss import DEFAULT_TEMPERATURE, ScoreMapLoss, score_map_loss
from .seed_loss import COUNT_FLOOR, BalancedSeedLoss, balanced_seed_loss, balanced_seed_loss_from_probs

__all__ = [
    "COUNT_FLOOR",
    "CRF_IMAGES",
    "CRF_MIN_PROB",
    "DEFAULT_LOSS_SIZE",
    "DEFAULT_TEMPERATURE",
    "DSRG_MIN_PROB",
    "RATIO_RANGE",
    "BalancedSeedLoss",
    "CRFBoundaryLoss",
    "ScoreMapLoss",
    "balanced_seed_loss",
    "balanced_seed_loss_from_probs",
    "boundary_loss_from_crf",
    "crf_boundary_loss",
    "crf_targets",
    "dsrg_probabilities",
    "images_for_crf",
    "official_crf_images",
    "score_map_loss",
    "seed_cues",
]
