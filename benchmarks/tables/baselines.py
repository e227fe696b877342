"""The baselines the WeakCLIP and POLE configs build on, as tables of their headline numbers.

``mctformer_voc``: MCTformer-V2 (CVPR 2022) with its PSA step and DeepLabV1-ResNet38 retrain;
``irn_voc``: IRNet's baseline CAMs and random walk (CVPR 2019, Table 1, as quoted in
``random_walk/irn_voc.yaml``); ``clims_voc``: CLIMS (CVPR 2022) CAMs, +RW and DeepLabV2 retrain, with the
numbers POLE and WeakCLIP quote.
"""

from __future__ import annotations

from .runs import (
    NO_TEST_GT,
    RANDOM_WALK_STAGES,
    VOC_DATA,
    clims_run,
    deeplab_run,
    mct_psa_run,
)
from .schema import Row, Run, Table
from .weakclip import (
    CLIMS_NOTE,
    CLIMS_RETRAIN_NOTE,
    MCT_CAM_NOTE,
    MCT_RETRAIN_NOTE,
    PSA_NOTE,
)

__all__ = ["BASELINE_TABLES"]

_SEG = {"crf": True, "multiscale": True}


def _mctformer_voc() -> Table:
    paper = "MCTformer (CVPR 2022)"
    rows = (
        Row("MCTformer-V2 CAMs (seeds)", "mIoU", 61.7, "VOC2012", "train", "mct_psa", "cams.eval.miou",
            note="best background threshold of the 0.00-0.59 sweep; " + MCT_CAM_NOTE),
        Row("+ PSA (pseudo masks)", "mIoU", 69.1, "VOC2012", "train", "mct_psa", "pseudo_masks.eval.miou",
            random_walk=True, note=PSA_NOTE),
        Row("DeepLabV1-ResNet38 / val", "mIoU", 71.9, "VOC2012", "val", "deeplab_mct", "eval.eval.miou",
            note=MCT_RETRAIN_NOTE, **_SEG),
        Row("DeepLabV1-ResNet38 / test", "mIoU", 71.6, "VOC2012", "test", None, None, why_not=NO_TEST_GT,
            note=MCT_RETRAIN_NOTE, test_of="deeplab_mct", **_SEG),
    )
    runs = (mct_psa_run(), deeplab_run("deeplab_mct", "deeplab/mctformer_v1_wr38.yaml", "mct_psa"))
    return Table("mctformer_voc", "MCTformer-V2 on VOC 2012: seeds, PSA pseudo masks, DeepLabV1-ResNet38 retrain",
                 paper, runs, rows, VOC_DATA, ("deit_small_imagenet", "resnet38_imagenet"))


def _irn_voc() -> Table:
    paper = "IRNet (CVPR 2019)"
    note = ("IRN's PolyOptimizer momentum quirk (1e-4) kept; training rescale by a factor (0.64-1.28) instead of "
            "a long side of 320-640 px")
    rows = (
        Row("ResNet-50 CAMs", "mIoU", 48.3, "VOC2012", "train", "irn", "seeds.eval.miou", multiscale=True,
            note="CAMs at IRN's background threshold 0.15 (seeds stage); " + note),
        Row("+ IRN random walk (pseudo masks)", "mIoU", 66.5, "VOC2012", "train", "irn", "pseudo_masks.eval.miou",
            multiscale=True, random_walk=True, note="boundary + displacement branches, official preset; " + note),
    )
    runs = (Run("irn", "random_walk/irn_voc.yaml", RANDOM_WALK_STAGES,
                note="IRN's baseline ResNet-50 CAM network, CAMs, seeds at 0.15, IRN's random walk"),)
    return Table("irn_voc", "IRNet on VOC 2012 train: baseline CAMs and the random walk", paper, runs, rows, VOC_DATA,
                 ("torchvision_resnet50_imagenet",))


def _clims_voc() -> Table:
    paper = "CLIMS (CVPR 2022), as quoted by POLE and WeakCLIP"
    rows = (
        Row("CLIMS CAMs", "mIoU", 56.6, "VOC2012", "train", "clims", "seeds.eval.miou", multiscale=True,
            note="CAMs at CLIMS's background threshold 0.15; " + CLIMS_NOTE),
        Row("+ IRN random walk (pseudo masks)", "mIoU", 70.5, "VOC2012", "train", "clims", "pseudo_masks.eval.miou",
            multiscale=True, random_walk=True, note=CLIMS_NOTE),
        Row("DeepLabV2-R101 (COCO init) / val", "mIoU", 70.4, "VOC2012", "val", "deeplab_clims", "eval.eval.miou",
            note=CLIMS_RETRAIN_NOTE, **_SEG),
        Row("DeepLabV2-R101 (COCO init) / test", "mIoU", 70.0, "VOC2012", "test", None, None, why_not=NO_TEST_GT,
            note=CLIMS_RETRAIN_NOTE, test_of="deeplab_clims", **_SEG),
    )
    runs = (clims_run("clims", "pole/table1_manual_photo.yaml"),
            deeplab_run("deeplab_clims", "deeplab/pole_v2_r101.yaml", "clims"))
    return Table("clims_voc", "CLIMS on VOC 2012: CAMs, +RW (IRN) and the DeepLabV2 retrain", paper, runs, rows,
                 VOC_DATA, ("irn_res50_cam", "clip_vit_b32_openai", "torchvision_resnet50_imagenet",
                            "deeplab_resnet101_coco"))


BASELINE_TABLES: tuple[Table, ...] = (_clims_voc(), _irn_voc(), _mctformer_voc())
