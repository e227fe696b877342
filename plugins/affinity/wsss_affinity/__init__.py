"""wsss-kit-affinity: the random-walk refiners for wsss_kit.

Plugins (entry points):

* ``refiners/psa_rw`` → :class:`PSARefiner` (PSA's AffinityNet + random walk, MCTformer's refinement);
* ``refiners/irn_rw`` → :class:`IRNRefiner` (IRNet's boundary branch + random walk, CLIMS/POLE's
  refinement, and IRNet's displacement-field branch).

Training targets of the two refiners from CAMs (``training_targets``): :mod:`wsss_affinity.relation_labels`.
The random-walk core shared by PSA and IRNet: :mod:`wsss_affinity.random_walk`. Presets:
:mod:`wsss_affinity.refiner_presets`.

State-dict converters (``wsss_kit.weights.CONVERTERS``): ``psa_affinity_net``, ``irn_resnet50``
(:mod:`wsss_affinity.convert_affinity`). PSA's AffinityNet is built on the deeplab plugin's
:class:`wsss_deeplab.WideResNet38`.
"""

from .affinity import AffinityNet, PSARefiner, affinity_labels, affinity_loss
from .convert_affinity import convert_irn_resnet50, convert_psa_affinity_net
from .irn import BoundaryBranch, DisplacementBranch, IRNBackbone, IRNRefiner, displacement_loss, pair_displacement
from .relation_labels import confident_regions, irn_relation_labels, label_crf, psa_relation_labels

__all__ = [
    "AffinityNet",
    "BoundaryBranch",
    "DisplacementBranch",
    "IRNBackbone",
    "IRNRefiner",
    "PSARefiner",
    "affinity_labels",
    "affinity_loss",
    "confident_regions",
    "convert_irn_resnet50",
    "convert_psa_affinity_net",
    "displacement_loss",
    "irn_relation_labels",
    "label_crf",
    "pair_displacement",
    "psa_relation_labels",
]
