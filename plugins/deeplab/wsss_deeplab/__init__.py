"""wsss-kit-deeplab: retrain heads and their losses for wsss_kit.

Plugins (entry points):

* ``heads/smp`` → :class:`SMPHead` (segmentation_models_pytorch networks);
* ``heads/deeplab_v1_wr38`` → :class:`DeepLabV1WR38` (DeepLabV1 on WideResNet-38: PSA, MCTformer, WeakCLIP);
* ``heads/deeplab_v2_r101`` → :class:`DeepLabV2R101` (DeepLabV2 ResNet-101 + ASPP + MSC: CLIMS, POLE);
* ``losses/balanced_ce`` → :class:`BalancedCELoss`, ``losses/cross_entropy`` → :class:`CrossEntropyLoss`,
  ``losses/deeplab_msc`` → :class:`MSCLoss` (the DeepLabV2 multi-scale sum around any loss);
* ``refiners/psa_rw`` → :class:`PSARefiner` (PSA's AffinityNet + random walk, MCTformer's refinement);
* ``refiners/irn_rw`` → :class:`IRNRefiner` (IRNet's boundary branch + random walk, CLIMS/POLE's
  refinement, and IRNet's displacement-field branch).

Training targets of the two refiners from CAMs (``training_targets``): :mod:`wsss_deeplab.relation_labels`.

The random-walk core shared by PSA and IRNet is :mod:`wsss_deeplab.random_walk`.

State-dict converters (``wsss_kit.weights.CONVERTERS``): ``psa_resnet38``, ``mctformer_resnet38_seg``,
``deeplab_v2_kazuto1011``, ``psa_affinity_net``, ``irn_resnet50``.
"""

from .affinity import AffinityNet, PSARefiner, affinity_labels, affinity_loss
from .convert_affinity import convert_irn_resnet50, convert_psa_affinity_net
from .convert_deeplab_v2 import convert_deeplab_v2_kazuto1011
from .convert_wr38 import convert_mctformer_resnet38_seg, convert_resnet38_imagenet
from .deeplab_v1 import DeepLabV1WR38
from .deeplab_v2 import DeepLabV2R101
from .irn import BoundaryBranch, DisplacementBranch, IRNBackbone, IRNRefiner, displacement_loss, pair_displacement
from .losses import (
    BalancedCELoss,
    CrossEntropyLoss,
    MSCLoss,
    balanced_ce_loss,
    cross_entropy_loss,
    msc_loss,
)
from .relation_labels import confident_regions, irn_relation_labels, label_crf, psa_relation_labels
from .smp_head import SMPHead
from .wide_resnet38 import WideResNet38

__all__ = [
    "AffinityNet",
    "BalancedCELoss",
    "BoundaryBranch",
    "CrossEntropyLoss",
    "DeepLabV1WR38",
    "DeepLabV2R101",
    "DisplacementBranch",
    "IRNBackbone",
    "IRNRefiner",
    "MSCLoss",
    "PSARefiner",
    "SMPHead",
    "WideResNet38",
    "affinity_labels",
    "affinity_loss",
    "balanced_ce_loss",
    "confident_regions",
    "convert_deeplab_v2_kazuto1011",
    "convert_irn_resnet50",
    "convert_mctformer_resnet38_seg",
    "convert_psa_affinity_net",
    "convert_resnet38_imagenet",
    "cross_entropy_loss",
    "displacement_loss",
    "irn_relation_labels",
    "label_crf",
    "msc_loss",
    "pair_displacement",
    "psa_relation_labels",
]
