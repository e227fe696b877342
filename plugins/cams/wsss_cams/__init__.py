"""wsss-kit-cams: CAM generators for wsss_kit.

Plugins (entry points): ``cams/resnet_cam`` → :class:`ResNetCAM`, ``cams/mctformer_v1`` →
:class:`MCTformerV1`, ``cams/mctformer_v2`` → :class:`MCTformerV2`, ``losses/multilabel_soft_margin``
→ :class:`MultiLabelSoftMarginLoss`. State-dict converters (registered on import):
``irn_resnet_cam`` (:func:`convert_irn_resnet50_cam`), the official IRN/CLIMS ResNet CAM layout →
:class:`ResNetCAM`'s, and ``mctformer`` (:func:`convert_mctformer`), the official MCTformer V1/V2
layout → :class:`MCTformer`'s.
"""

from .convert_mctformer import convert_mctformer
from .convert_resnet_cam import convert_irn_resnet50_cam, is_irn_layout
from .losses import MultiLabelSoftMarginLoss, multilabel_soft_margin_loss
from .mctformer import MCTformer, MCTformerV1, MCTformerV2
from .resnet_cam import ResNetCAM

__all__ = ["MCTformer", "MCTformerV1", "MCTformerV2", "MultiLabelSoftMarginLoss", "ResNetCAM",
           "convert_irn_resnet50_cam", "convert_mctformer", "is_irn_layout", "multilabel_soft_margin_loss"]
