"""The checkpoints the retrain heads start from or reproduce with, as data (entry-point group
``wsss_kit.released``)."""

from __future__ import annotations

from wsss_kit.weights import UNKNOWN_SHA_NOTE, ReleasedCheckpoint

__all__ = ["HEAD_RELEASED"]

HEAD_RELEASED: dict[str, ReleasedCheckpoint] = {
    # What the retrain heads start from.
    "resnet38_imagenet": ReleasedCheckpoint(
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth",
        "the MXNet ResNet38 (Wider or Deeper, itijyou/ademxapp) ImageNet model "
        "ilsvrc-cls_rna-a1_cls1000_ep-0001.params, as linked from the PSA (jiwoon-ahn/psa) README",
        "heads/deeplab_v1_wr38, refiners/psa_rw (ResNet38 / WideResNet38 initialisation)",
        None,
        "The download is an MXNet .params file: PSA's network/resnet38d.py convert_mxnet_to_torch "
        "(needs mxnet) turns it into the state dict (conv1a.weight, b2.conv_branch2a.weight, ..., "
        "bn7.*) that the deeplab plugin reads (converter 'psa_resnet38'); torch.save that dict "
        "under this name. The download's MD5 is ff21f45d6bf03284100dcbec571edfad (ademxapp's "
        "models/checksum.md5); the converted file's SHA-256 depends on the torch version that saved it: unknown.",
    ),
    "deeplab_resnet101_coco": ReleasedCheckpoint(
        "deeplabv1_resnet101-coco.pth",
        "kazuto1011/deeplab-pytorch (scripts/setup_caffemodels.sh fetches the DeepLab authors' "
        "init.caffemodel; `python convert.py --dataset coco` writes this file), or the weights "
        "folder linked from CLIMS's segmentation/deeplabv2/README.md",
        "heads/deeplab_v2_r101 with style='caffe' (the COCO initialisation of the CLIMS/POLE retrain)",
        None,
        "DeepLabV1 ResNet-101 (Caffe) trained on MS COCO, in kazuto1011's layout "
        "(layer1.conv1.conv.weight, layer2.block1.reduce.conv.weight, ..., fc.* with 91 classes, "
        "dropped); converter 'deeplab_v2_kazuto1011'. SHA-256 unknown: the file is converted locally "
        "(scripts/setup_caffemodels.sh gives no checksum for the caffemodel archive either).",
    ),
    "deeplab_resnet101_imagenet": ReleasedCheckpoint(
        "deeplabv1_resnet101-imagenet.pth",
        "the weights folder linked from CLIMS's segmentation/deeplabv2/README.md",
        "heads/deeplab_v2_r101 with style='caffe' (the ImageNet initialisation of CLIMS's main_v2.py retrain)",
        None,
        "What CLIMS's voc12_imagenet_pretrained.yaml loads: by its name, ImageNet ResNet-101 "
        "weights in kazuto1011's DeepLabV1 layout (not checked against the file); converter "
        "'deeplab_v2_kazuto1011'." + UNKNOWN_SHA_NOTE,
    ),
}
