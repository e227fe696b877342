"""The runs that several tables share, built by small functions so that every table chains them alike.

A table lists the runs it needs in order; the same run (e.g. MCTformer-V2 seeds) appears in several
tables with the same name and config, so a reader of one table sees the whole chain it depends on.
"""

from __future__ import annotations

from .schema import Input, Run

__all__ = [
    "CITED",
    "COCO_DATA",
    "NO_TEST_GT",
    "POLE_SELECTION",
    "RANDOM_WALK_STAGES",
    "VOC_DATA",
    "clims_run",
    "deeplab_run",
    "irn_baseline_run",
    "mct_psa_run",
    "mct_seeds_run",
    "pole_run",
    "pole_select_run",
    "weakclip_run",
]

CITED = "another method's number, cited"
NO_TEST_GT = ("the VOC 2012 test masks are not public: the number comes from the PASCAL evaluation server "
              "(predict the test images with the trained head, e.g. its eval stage with data.eval.split=test, "
              "and submit the PNGs)")

VOC_DATA = ("PASCAL VOC 2012 with SBD's SegmentationClassAug: --data-root holds VOCdevkit/VOC2012/ "
            "(JPEGImages, SegmentationClass, SegmentationClassAug, ImageSets/Segmentation/{train,val}.txt, "
            "ImageSets/SegmentationAug/train_aug.txt)")
COCO_DATA = ("MS COCO 2014: --data-root holds coco/ (train2014/, val2014/, "
             "annotations/instances_{train,val}2014.json)")

POLE_SELECTION = "selection_train_aug.json"
"""File name of POLE's synonym selection inside the ``pole_select`` run's folder."""

# Every run names its stages: a run without `head` (or without `cam`) must not ask for train_head/eval.
SEED_STAGES = ("train_cam", "cams", "seeds")
RANDOM_WALK_STAGES = ("train_cam", "cams", "seeds", "train_refiner", "pseudo_masks")
WEAKCLIP_STAGES = ("seeds", "train_refiner", "pseudo_masks")
RETRAIN_STAGES = ("pseudo_masks", "train_head", "eval")  # pseudo_masks copies pseudo_masks.source


def mct_seeds_run(name: str = "mct_seeds", config: str = "mctformer/voc_v2.yaml",
                  overrides: tuple[str, ...] = ()) -> Run:
    """MCTformer-V2 trained on data.train; CAMs and seeds of data.train (``seeds/train``) and data.eval
    (``seeds/eval``), the seeds WeakCLIP refines."""
    return Run(name, config, SEED_STAGES, overrides=overrides,
               note="MCTformer-V2 CAM network, CAMs (best threshold of the sweep on data.eval) and seeds")


def mct_psa_run(name: str = "mct_psa") -> Run:
    """MCTformer-V2 and its PSA random walk in one run: CAMs/seeds (61.7) and pseudo masks (69.1)."""
    return Run(name, "random_walk/mctformer_psa_voc.yaml", RANDOM_WALK_STAGES,
               note="MCTformer-V2 CAMs and seeds, then PSA's AffinityNet random walk (MCTformer's pseudo masks)")


def weakclip_run(name: str, config: str, seeds_from: str, overrides: tuple[str, ...] = ()) -> Run:
    """A WeakCLIP refiner trained on the seeds of run ``seeds_from``; writes pseudo masks of both splits."""
    return Run(name, config, WEAKCLIP_STAGES,
               inputs=(Input("seeds.source.train", seeds_from, "seeds/train"),
                       Input("seeds.source.eval", seeds_from, "seeds/eval")),
               overrides=overrides,
               note=f"WeakCLIP ({config}) on the seeds of {seeds_from}; pseudo masks of both splits")


def deeplab_run(name: str, config: str, masks_from: str, note: str = "") -> Run:
    """A retrain head (``deeplab/*.yaml``) trained on the train pseudo masks of run ``masks_from``,
    then scored on its data.eval (VOC val / COCO val)."""
    return Run(name, config, RETRAIN_STAGES,
               inputs=(Input("pseudo_masks.source.train", masks_from, "pseudo_masks/train"),),
               note=note or f"{config} trained on the pseudo masks of {masks_from}, scored on data.eval")


def irn_baseline_run(name: str = "irn_baseline") -> Run:
    """IRN's baseline CAMs of train_aug from the authors' network (what POLE's selection reads).

    Under ``--smoke`` the released network is absent: a tiny baseline is trained instead.
    """
    return Run(name, "resnet_cam/voc.yaml",
               command=("wsss", "cam", "{config}", "--split", "train", "--checkpoint", "released:irn_res50_cam",
                        "--no-seeds", "--out", "{run_dir}"),
               smoke_command=("wsss", "run", "{config}", "--stages", "train_cam,cams", "--out", "{run_dir}"),
               note="baseline CAMs of train_aug (cams/train) from IRN's released ResNet-50 CAM network")


def pole_select_run(config: str, baseline: str = "irn_baseline", name: str = "pole_select") -> Run:
    """POLE's synonym selection over train_aug from the baseline CAMs of run ``baseline``."""
    return Run(name, config,
               command=("wsss-pole-select", "{config}", "--cams", "{run:" + baseline + "}/cams/train",
                        "--out", "{run_dir}/" + POLE_SELECTION),
               note="POLE's [CLS*] selection (CLIP ViT-B/32 over the class word and Table S1's synonyms)")


def pole_run(name: str, config: str, select: str = "pole_select") -> Run:
    """A POLE CAM network trained with the selection of run ``select``, then IRN's random walk (+RW)."""
    return Run(name, config, RANDOM_WALK_STAGES,
               inputs=(Input("cam.model.selection_cache", select, POLE_SELECTION),),
               note=f"POLE ({config}): CAMs, seeds at 0.15, IRN's random walk")


def clims_run(name: str, config: str) -> Run:
    """A CLIMS-style CAM network (a prompt strategy, no selection), then IRN's random walk (+RW)."""
    return Run(name, config, RANDOM_WALK_STAGES, note=f"CLIMS-style training ({config}): CAMs, seeds at 0.15, IRN's random walk")
