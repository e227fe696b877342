"""wsss-kit-weakclip: WeakCLIP (Zhu et al., IJCV 2024) for wsss_kit.

Plugins (entry points): ``refiners/weakclip`` → :class:`WeakCLIPRefiner` (the trainable refiner),
``losses/balanced_seed`` → :class:`BalancedSeedLoss` and ``losses/crf_boundary`` →
:class:`CRFBoundaryLoss` (the DSRG-style losses), ``prompts/weakclip_context`` →
:class:`WeakCLIPContext` (the learnable text context). The network is :class:`WeakCLIPNet`; its
settings come as presets (:data:`PRESETS`: ``official``, ``paper`` and the paper's ablation rows);
:func:`load_official_checkpoint` loads checkpoints of the official code.
"""

from .convert import convert_official_weakclip, is_official_layout, load_official_checkpoint
from .losses import BalancedSeedLoss, CRFBoundaryLoss, balanced_seed_loss, crf_boundary_loss
from .model import DEFAULT_CLIP_WEIGHTS, WeakCLIPNet
from .presets import OFFICIAL, PAPER_MIOU, PAPER_VS_OFFICIAL, PRESETS, preset_names, resolve_settings
from .prompt import WeakCLIPContext
from .refiner import WeakCLIPRefiner

__all__ = ["DEFAULT_CLIP_WEIGHTS", "OFFICIAL", "PAPER_MIOU", "PAPER_VS_OFFICIAL", "PRESETS", "BalancedSeedLoss",
           "CRFBoundaryLoss", "WeakCLIPContext", "WeakCLIPNet", "WeakCLIPRefiner", "balanced_seed_loss",
           "convert_official_weakclip", "crf_boundary_loss", "is_official_layout", "load_official_checkpoint",
           "preset_names", "resolve_settings"]
