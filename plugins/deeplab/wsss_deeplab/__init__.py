"""wsss-kit-deeplab: retrain heads and their losses for wsss_kit.

Plugins (entry points): ``heads/smp`` → :class:`SMPHead`, ``losses/balanced_ce`` → :class:`BalancedCELoss`.
"""

from .losses import BalancedCELoss, balanced_ce_loss
from .smp_head import SMPHead

__all__ = ["BalancedCELoss", "SMPHead", "balanced_ce_loss"]
