"""kazuto1011/deeplab-pytorch (Caffe-derived DeepLabV2 ResNet-101) layouts → :class:`~wsss_deeplab.DeepLabV2R101`.

CLIMS (``segmentation/deeplabv2``) and POLE retrain with kazuto1011's code; its checkpoints
come in these layouts (key names from its ``libs/models/{resnet,deeplabv2,msc}.py`` and
``convert.py``):

* the COCO initialisation ``deeplabv1_resnet101-coco.pth`` (Caffe ``init.caffemodel`` of the
  DeepLab authors, converted into ``DeepLabV1_ResNet101``; also the ImageNet variant
  ``deeplabv1_resnet101-imagenet.pth`` CLIMS links)::

      layer1.conv1.conv.weight   layer1.conv1.bn.{weight,bias,running_mean,running_var}
      layer{2..5}.block{n}.{reduce,conv3x3,increase,shortcut}.{conv.weight, bn.*}
      fc.weight (91, 2048, 1, 1)   fc.bias                 # the COCO classifier, not used

  ``layer2..layer5`` are ResNet's ``res2..res5`` (``layer1`` is the stem); ``shortcut`` exists in
  ``block1`` only; Caffe's stride sits in the first 1×1 convolution (``reduce``);
* a trained ``DeepLabV2_ResNet101_MSC`` (``checkpoint_final.pth``): the same names under the
  ``MSC`` wrapper's ``base.`` prefix, plus the ASPP ``base.aspp.c{0..3}.{weight,bias}``;
* the same from the code before 2019: prefix ``scale.``, ``proj`` for ``shortcut``,
  ``aspp.stages.c{i}``.

Here they become the timm ResNet names (``conv1``, ``bn1``, ``layer{1..4}.{i}.conv1/bn1/conv2/
bn2/conv3/bn3``, ``downsample.0/1``) under ``backbone.``, and ``aspp.convs.{i}.*``; the head
must be built with ``style="caffe"`` for the weights to mean what they meant. Any depth converts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from wsss_kit.errors import WeightsError
from wsss_kit.weights import register_converter
from wsss_kit.weights.converters import fill_bn_counters, strip_module_prefix, unknown_layout

__all__ = ["convert_deeplab_v2_kazuto1011", "describe_deeplab_state_dict", "is_deeplab_v2_plugin_layout",
           "is_kazuto1011_layout"]

_PREFIX = r"(?:base\.|scale\.)?"
_STEM = re.compile(rf"^{_PREFIX}layer1\.conv1\.(conv|bn)\.([a-z_]+)$")
_BLOCK = re.compile(
    rf"^{_PREFIX}layer([2-9])\.block(\d+)\.(reduce|conv3x3|increase|shortcut|proj)\.(conv|bn)\.([a-z_]+)$")
_ASPP = re.compile(rf"^{_PREFIX}aspp\.(?:stages\.)?c(\d+)\.(weight|bias)$")
_CLASSIFIER = re.compile(rf"^{_PREFIX}fc\.(weight|bias)$")
_TIMM = {("reduce", "conv"): "conv1", ("reduce", "bn"): "bn1", ("conv3x3", "conv"): "conv2",
         ("conv3x3", "bn"): "bn2", ("increase", "conv"): "conv3", ("increase", "bn"): "bn3",
         ("shortcut", "conv"): "downsample.0", ("shortcut", "bn"): "downsample.1",
         ("proj", "conv"): "downsample.0", ("proj", "bn"): "downsample.1"}


def is_kazuto1011_layout(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` uses kazuto1011's DeepLab names (``[base.]layer2.block1.reduce.conv.weight``...)."""
    return any(_BLOCK.match(k) for k in state)


def is_deeplab_v2_plugin_layout(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` is a ``heads/deeplab_v2_r101`` state dict (``backbone.conv1.weight``, ``aspp.convs.*``)."""
    return "backbone.conv1.weight" in state and any(k.startswith("aspp.convs.") for k in state)


def describe_deeplab_state_dict(state: Mapping[str, Tensor]) -> str:
    """A few words on what a state dict looks like, for error messages."""
    keys = list(state)
    if is_kazuto1011_layout(state):
        aspp = any(_ASPP.match(k) for k in keys)
        return ("a trained DeepLabV2-MSC network (kazuto1011 layout with ASPP)" if aspp else
                "a DeepLab ResNet-101 backbone in kazuto1011's layout (e.g. the COCO initialisation)")
    if is_deeplab_v2_plugin_layout(state):
        return "a heads/deeplab_v2_r101 state dict"
    if "conv1a.weight" in state:
        return "a ResNet38 (PSA/MCTformer layout); load it with heads/deeplab_v1_wr38"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in keys):
        return "a torchvision/timm ResNet (conv1, layer1..layer4), e.g. ImageNet weights"
    if "cls_token" in state or any(".attn.qkv." in k for k in keys):
        return "a Vision Transformer (cls_token, blocks.N.attn.qkv)"
    return unknown_layout(state)


@register_converter("deeplab_v2_kazuto1011")
def convert_deeplab_v2_kazuto1011(state_dict: Mapping[str, Tensor], num_classes: int | None = None,
                                  source: str = "checkpoint") -> dict[str, Tensor]:
    """A kazuto1011-layout DeepLab ResNet-101 → ``backbone.*`` (timm names) and ``aspp.convs.*``.

    Args:
        state_dict: any of the layouts in the module docstring (a ``module.`` prefix is removed).
        num_classes: when given and the file has an ASPP, its class count must equal it.
        source: names the checkpoint in messages.

    Returns:
        the converted dict: ``backbone.*`` always, ``aspp.convs.{i}.{weight,bias}`` when the file has
        an ASPP. A DeepLabV1 classifier ``fc.*`` (the COCO initialisation's 91 classes) is dropped,
        as the official training skips it. Missing ``num_batches_tracked`` buffers are filled with 0.

    Raises:
        WeightsError: not this layout (the message says what it looks like), unknown keys, an
            ASPP whose branches disagree, or ``K`` ≠ ``num_classes``.
    """
    state = strip_module_prefix(state_dict)
    if is_deeplab_v2_plugin_layout(state):
        converted = dict(state)
    elif is_kazuto1011_layout(state):
        converted = _from_kazuto1011(state, source)
    else:
        raise WeightsError(f"{source} is not a DeepLabV2 ResNet checkpoint in kazuto1011's layout: it looks like "
                           f"{describe_deeplab_state_dict(state)}")
    fill_bn_counters(converted)
    aspp = sorted({int(k.split(".")[2]) for k in converted if k.startswith("aspp.convs.")})
    if aspp:
        shapes = {tuple(converted[f"aspp.convs.{i}.weight"].shape) for i in aspp
                  if f"aspp.convs.{i}.weight" in converted}
        if len(shapes) != 1 or aspp != list(range(len(aspp))):
            raise WeightsError(f"{source}: the ASPP branches c{aspp} have weights of shapes {sorted(shapes)}; "
                               f"expected consecutive branches c0, c1, ... of one shape")
        classes = next(iter(shapes))[0]
        if num_classes is not None and classes != num_classes:
            raise WeightsError(
                f"{source} predicts {classes} classes (ASPP weights {next(iter(shapes))}) but the head was built "
                f"with num_classes={num_classes} (background included); build it with num_classes={classes} or "
                f"use a checkpoint trained on your classes")
    return converted


def _from_kazuto1011(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if m := _STEM.match(key):
            converted[f"backbone.{'conv1' if m.group(1) == 'conv' else 'bn1'}.{m.group(2)}"] = value
        elif m := _BLOCK.match(key):
            layer, block, unit, kind, param = m.groups()
            converted[f"backbone.layer{int(layer) - 1}.{int(block) - 1}.{_TIMM[unit, kind]}.{param}"] = value
        elif m := _ASPP.match(key):
            converted[f"aspp.convs.{m.group(1)}.{m.group(2)}"] = value
        elif _CLASSIFIER.match(key):
            continue
        else:
            unknown.append(key)
    if unknown:
        more = f" ... (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise WeightsError(f"{source} is in kazuto1011's DeepLab layout but has keys a DeepLabV2 ResNet does not: "
                           f"{', '.join(unknown[:5])}{more}; is it another model of that code (DeepLabV3/V3+ has "
                           f"aspp.c0.conv, aspp.imagepool)? Only DeepLabV1/V2 ResNets convert")
    return converted
