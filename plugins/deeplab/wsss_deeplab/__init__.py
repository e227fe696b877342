"""wsss-kit-deeplab: retrain heads and their losses for wsss_kit.

Plugins (entry points):

* ``heads/smp`` → :class:`SMPHead` (segmentation_models_pytorch networks);
* ``heads/deeplab_v1_wr38`` → :class:`DeepLabV1WR38` (DeepLabV1 on WideResNet-38: PSA, MCTformer, WeakCLIP);
* ``heads/deeplab_v2_r101`` → :class:`DeepLabV2R101` (DeepLabV2 ResNet-101 + ASPP + MSC: CLIMS, POLE);
* ``losses/balanced_ce`` → :class:`BalancedCELoss`, ``losses/cross_entropy`` → :class:`CrossEntropyLoss`,
  ``losses/deeplab_msc`` → :class:`MSCLoss` (the DeepLabV2 multi-scale sum around any loss).

The random-walk refiners (``psa_rw``, ``irn_rw``) are the ``wsss-kit-affinity`` distribution
(:mod:`wsss_affinity`); PSA's AffinityNet is built on this plugin's :class:`WideResNet38`.

State-dict converters (``wsss_kit.weights.CONVERTERS``): ``psa_resnet38``, ``mctformer_resnet38_seg``,
``deeplab_v2_kazuto1011``.
"""

from .convert_deeplab_v2 import convert_deeplab_v2_kazuto1011
from .convert_wr38 import convert_mctformer_resnet38_seg, convert_resnet38_imagenet
from .deeplab_v1 import DeepLabV1WR38
from .deeplab_v2 import DeepLabV2R101
from .losses import (
    BalancedCELoss,
    CrossEntropyLoss,
    MSCLoss,
    balanced_ce_loss,
    cross_entropy_loss,
    msc_loss,
)
from .smp_head import SMPHead
from .wide_resnet38 import WideResNet38

__all__ = [
    "BalancedCELoss",
    "CrossEntropyLoss",
    "DeepLabV1WR38",
    "DeepLabV2R101",
    "MSCLoss",
    "SMPHead",
    "WideResNet38",
    "balanced_ce_loss",
    "convert_deeplab_v2_kazuto1011",
    "convert_mctformer_resnet38_seg",
    "convert_resnet38_imagenet",
    "cross_entropy_loss",
    "msc_loss",
]
