"""The dense-CRF parameter sets of the retrain heads' inference, as data (entry-point group
``wsss_kit.crf_params``; origins in docs/methods.md)."""

from __future__ import annotations

from wsss_kit.catalog import Alias
from wsss_kit.crf import CRFParams

__all__ = ["HEAD_CRF_PARAMS"]

HEAD_CRF_PARAMS: dict[str, CRFParams | Alias] = {
    # WeakCLIP's DeepLabV1-ResNet38 retrain, test time: (1, 3) / (112, 2, 3).
    "weakclip_retrain": CRFParams(1, 3, 112, 2, 3),
    # MCTformer's segmentation network (ResNet38 + dilated convs), test time: (4, 3) / (83, 5, 3).
    "mctformer_seg": CRFParams(4, 3, 83, 5, 3),
    # CLIMS/POLE's DeepLabV2 retrain runs kazuto1011/deeplab-pytorch's VOC config unchanged.
    "clims_retrain": Alias("deeplab_pytorch"),
}
