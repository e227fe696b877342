"""wsss-kit-cams: CAM generators for wsss_kit.

Plugins (entry points): ``cams/resnet_cam`` → :class:`ResNetCAM`,
``losses/multilabel_soft_margin`` → :class:`MultiLabelSoftMarginLoss`.
"""

from .losses import MultiLabelSoftMarginLoss, multilabel_soft_margin_loss
from .resnet_cam import ResNetCAM

__all__ = ["MultiLabelSoftMarginLoss", "ResNetCAM", "multilabel_soft_margin_loss"]
