"""WeakCLIP's dense-CRF parameter sets, as data (entry-point group ``wsss_kit.crf_params``; origins
in docs/methods.md)."""

from __future__ import annotations

from wsss_kit.catalog import Alias
from wsss_kit.crf import CRFParams

__all__ = ["CRF_PARAMS"]

CRF_PARAMS: dict[str, CRFParams | Alias] = {
    # Pseudo-mask inference on VOC: Gaussian (3, 3), bilateral (83, 5, 3).
    "weakclip_voc": CRFParams(3, 3, 83, 5, 3),
    # Pseudo-mask inference on COCO: (1, 3) / (67, 3, 4), the values of kazuto1011/deeplab-pytorch's config.
    "weakclip_coco": Alias("deeplab_pytorch"),
    # The CRF inside the boundary loss (on the 64x64 de-normalised image) is the DeepLab default.
    "weakclip_loss": Alias("default"),
}
