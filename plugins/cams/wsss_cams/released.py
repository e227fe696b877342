"""The authors' checkpoints of the CAM networks, as data (entry-point group ``wsss_kit.released``:
usable as ``released:<name>`` weight specs; listed by ``wsss weights --list``)."""

from __future__ import annotations

from wsss_kit.weights import UNKNOWN_SHA_NOTE, ReleasedCheckpoint

__all__ = ["RELEASED"]

RELEASED: dict[str, ReleasedCheckpoint] = {
    "mctformer_v1_voc": ReleasedCheckpoint(
        "MCTformer_v1_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V1' model link",
        "cams/mctformer_v1 (DeiT-S, 20 class tokens)",
        None,
        "PASCAL VOC 2012 classification checkpoint of the V1/V2 code (commit 96065977); the "
        "download has a generic name (checkpoint.pth): rename it. Its state dict sits under 'model'."
        + UNKNOWN_SHA_NOTE,
    ),
    "mctformer_v2_voc": ReleasedCheckpoint(
        "MCTformer_v2_voc.pth",
        "the MCTformer GitHub repository (xulianuwa/MCTformer), README 'MCTformer-V2' model link",
        "cams/mctformer_v2 (DeiT-S, 20 class tokens + patch-token conv head)",
        None,
        "PASCAL VOC 2012 classification checkpoint; rename the download. State dict under 'model'." + UNKNOWN_SHA_NOTE,
    ),
    "deit_small_imagenet": ReleasedCheckpoint(
        "deit_small_patch16_224-cd65a155.pth",
        "the DeiT repository (facebookresearch/deit), model zoo 'DeiT-small'",
        "cams/mctformer_v1, cams/mctformer_v2 (ImageNet initialisation)",
        "cd65a155",
        "What MCTformer fine-tunes from (https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth, "
        "the URL timm's deit_small_patch16_224.fb_in1k config names). SHA-256 prefix: the file name's hash part, "
        "torch.hub's convention (check_hash compares the first digits of the file's SHA-256).",
        ("timm:deit_small_patch16_224.fb_in1k",),
    ),
    "irn_res50_cam": ReleasedCheckpoint(
        "res50_cam.pth",
        "the CLIMS GitHub repository (CVI-SZU/CLIMS), README link to the baseline CAM network "
        "(trained with the IRN code, jiwoon-ahn/irn)",
        "cams/resnet_cam and cams/clims (ResNet-50, output stride 16)",
        None,
        "Baseline multi-label ResNet-50 CAM network on VOC 2012 train_aug; CLIMS and POLE "
        "initialise from it and POLE selects synonyms with its CAMs." + UNKNOWN_SHA_NOTE,
    ),
    "torchvision_resnet50_imagenet": ReleasedCheckpoint(
        "resnet50-19c8e357.pth",
        "torchvision's model zoo (ResNet-50 ImageNet weights, the ones IRN/CLIMS start from)",
        "cams/resnet_cam (ImageNet initialisation)",
        "19c8e357",
        "https://download.pytorch.org/models/resnet50-19c8e357.pth, the URL IRN's and CLIMS's resnet50.py load. "
        "SHA-256 prefix: the file name's hash part (torch.hub's convention). timm:resnet50.tv_in1k fetches "
        "resnet50-0676ba61.pth, the file torchvision >= 0.13 names for its ResNet-50 V1 ImageNet weights "
        "(another file, so another hash).",
        ("timm:resnet50.tv_in1k",),
    ),
}
