"""Official ResNet38 checkpoint layouts → :class:`~wsss_deeplab.DeepLabV1WR38`'s layout.

Two official layouts (key names from jiwoon-ahn/psa ``network/resnet38d.py`` and
xulianuwa/MCTformer ``seg/network/resnet38_seg.py``):

* the ImageNet initialisation shared by PSA, MCTformer and their followers: the MXNet
  ``ilsvrc-cls_rna-a1_cls1000_ep-0001.params`` turned into a PyTorch dict by PSA's
  ``convert_mxnet_to_torch``::

      conv1a.weight
      b2.bn_branch2a.{weight,bias,running_mean,running_var}   b2.conv_branch2a.weight
      b2.bn_branch2b1.*   b2.conv_branch2b1.weight   b2.conv_branch1.weight   (b2_1, b2_2, b3, ... b5_2)
      b6.bn_branch2b2.*   b6.conv_branch2b2.weight   (bottlenecks b6, b7)
      bn7.{weight,bias,running_mean,running_var}

  (no ``num_batches_tracked``: it came from MXNet; the 1000-class ``linear1000`` is dropped by
  PSA's converter and here too if present);
* MCTformer's trained segmentation network (``resnet38_seg.Net`` saved with
  ``torch.save(model.module.state_dict())``): the same backbone keys, with
  ``num_batches_tracked``, plus ``fc8_seg_conv1.{weight,bias}`` (4096→512, 3×3 dilation 12) and
  ``fc8_seg_conv2.{weight,bias}`` (512→K).

Names are mapped structurally (``b{s}_{i}.<layer>`` → ``backbone.stages.{s-2}.{i}.<layer>``), so
any width and depth converts; the model must be built with the checkpoint's widths and depths
(strict loading names every key that does not fit). Missing ``num_batches_tracked`` buffers are
filled with 0 so that strict loading works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from wsss_kit.errors import WeightsError
from wsss_kit.weights import register_converter
from wsss_kit.weights.converters import fill_bn_counters, strip_module_prefix, unknown_layout

__all__ = [
    "convert_mctformer_resnet38_seg",
    "convert_resnet38_imagenet",
    "describe_resnet38_state_dict",
    "is_resnet38_layout",
    "is_wr38_plugin_layout",
    "wr38_backbone_key",
]

_BLOCK = re.compile(r"^b([2-9])(?:_(\d+))?\.([a-z0-9_]+)\.([a-z_]+)$")
_LAYERS = {
    "bn_branch2a": "norm1", "conv_branch2a": "conv1", "bn_branch2b1": "norm2", "conv_branch2b1": "conv2",
    "bn_branch2b2": "norm3", "conv_branch2b2": "conv3", "conv_branch1": "shortcut",
}
_HEAD = {"fc8_seg_conv1.": "head.conv1.", "fc8_seg_conv2.": "head.conv2."}
_DROPPED = ("linear1000.",)
"""The ImageNet classifier of the MXNet model, unused by the segmentation network."""


def is_resnet38_layout(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` uses the official PSA/MCTformer ResNet38 names (``conv1a.weight``, ``b2.*``)."""
    return "conv1a.weight" in state and any(k.startswith("b2.") for k in state)


def is_wr38_plugin_layout(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` is already in this plugin's layout (``backbone.stem.weight``, ``backbone.stages.*``)."""
    return "backbone.stem.weight" in state and any(k.startswith("backbone.stages.") for k in state)


def describe_resnet38_state_dict(state: Mapping[str, Tensor]) -> str:
    """A few words on what a state dict looks like, for error messages."""
    keys = list(state)
    if any(k.startswith(("f8_3.", "f9.")) for k in keys):
        return "a PSA AffinityNet (resnet38_aff: f8_3, f9, ...), not a segmentation network"
    if "fc8.weight" in state and is_resnet38_layout(state):
        return ("a ResNet38 classification (CAM) network (resnet38_cls: fc8.weight); its backbone is not the "
                "ImageNet initialisation and it has no segmentation layers")
    if "fc8_seg_conv2.weight" in state:
        return "MCTformer's ResNet38 segmentation network (fc8_seg_conv1/2)"
    if is_resnet38_layout(state):
        return "a ResNet38 backbone in the PSA layout (conv1a, b2 ... b7, bn7)"
    if is_wr38_plugin_layout(state):
        return "a heads/deeplab_v1_wr38 state dict"
    if any(".block1.reduce." in k for k in keys):
        return "a DeepLabV2 ResNet-101 (kazuto1011 layout: layer2.block1.reduce...); load it with heads/deeplab_v2_r101"
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in keys):
        return ("a torchvision/timm ResNet (conv1, layer1...); "
                "ResNet backbones go with heads/deeplab_v2_r101 or heads/smp")
    if "cls_token" in state or any(".attn.qkv." in k for k in keys):
        return "a Vision Transformer (cls_token, blocks.N.attn.qkv), e.g. an MCTformer CAM network"
    return unknown_layout(state)


def wr38_backbone_key(key: str) -> str | None:
    """Official backbone key → ``backbone.*`` name here, or None when it is not a backbone key."""
    if key == "conv1a.weight":
        return "backbone.stem.weight"
    if key.startswith("bn7."):
        return "backbone.norm_out." + key[len("bn7."):]
    match = _BLOCK.match(key)
    if match is None or match.group(3) not in _LAYERS:
        return None
    stage, index, layer, param = match.groups()
    return f"backbone.stages.{int(stage) - 2}.{int(index or 0)}.{_LAYERS[layer]}.{param}"


def _convert(state: dict[str, Tensor], source: str, allow_head: bool) -> dict[str, Tensor]:
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key.startswith(_DROPPED):
            continue
        head = next((p for p in _HEAD if key.startswith(p)), None)
        if head is not None and allow_head:
            converted[_HEAD[head] + key[len(head):]] = value
            continue
        new = wr38_backbone_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value
    if unknown:
        more = f" ... (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise WeightsError(
            f"{source} is in the ResNet38 layout but has keys that the "
            f"{'segmentation network' if allow_head else 'ImageNet backbone'} does not: "
            f"{', '.join(unknown[:5])}{more}; it looks like {describe_resnet38_state_dict(state)}")
    return fill_bn_counters(converted)


@register_converter("psa_resnet38")
def convert_resnet38_imagenet(state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> dict[str, Tensor]:
    """The PSA-converted ResNet38 ImageNet weights → ``backbone.*`` of :class:`~wsss_deeplab.DeepLabV1WR38`.

    Args:
        state_dict: ``conv1a.weight``, ``b2.*`` … ``b7.*``, ``bn7.*`` (optionally ``linear1000.*``,
            dropped, and a ``module.`` prefix). A state dict already in this plugin's layout passes
            through with only its ``backbone.*`` keys.
        source: names the checkpoint in messages.

    Returns:
        ``{"backbone.<name>": tensor}`` with ``num_batches_tracked`` buffers filled in.

    Raises:
        WeightsError: another network (the message says what it looks like), including a trained
            segmentation network (pass it as ``checkpoint=``) or keys the backbone does not have.
    """
    state = strip_module_prefix(state_dict)
    if is_wr38_plugin_layout(state):
        return fill_bn_counters({k: v for k, v in state.items() if k.startswith("backbone.")})
    if not is_resnet38_layout(state):
        raise WeightsError(f"{source} is not a ResNet38 backbone: it looks like {describe_resnet38_state_dict(state)}")
    if "fc8_seg_conv2.weight" in state:
        raise WeightsError(f"{source} is a trained ResNet38 segmentation network (fc8_seg_conv1/2), not the "
                           f"ImageNet initialisation: pass it as checkpoint=, or convert it with the "
                           f"'mctformer_resnet38_seg' converter")
    return _convert(state, source, allow_head=False)


@register_converter("mctformer_resnet38_seg")
def convert_mctformer_resnet38_seg(state_dict: Mapping[str, Tensor], num_classes: int | None = None,
                                   source: str = "checkpoint") -> dict[str, Tensor]:
    """MCTformer's trained ``resnet38_seg.Net`` (or this plugin's state dict) → :class:`~wsss_deeplab.DeepLabV1WR38`.

    Args:
        state_dict: backbone keys as in :func:`convert_resnet38_imagenet` plus
            ``fc8_seg_conv1.{weight,bias}`` and ``fc8_seg_conv2.{weight,bias}``.
        num_classes: the model's ``K`` (background included); ``None`` accepts any.
        source: names the checkpoint in messages.

    Returns:
        ``{"backbone.<name>": ..., "head.conv1.*": ..., "head.conv2.*": ...}``.

    Raises:
        WeightsError: not a ResNet38 segmentation network (an ImageNet backbone is named as such:
            pass it as ``weights=``), unknown keys, or ``K`` ≠ ``num_classes``.
    """
    state = strip_module_prefix(state_dict)
    if is_wr38_plugin_layout(state):
        converted = fill_bn_counters(dict(state))
    elif is_resnet38_layout(state):
        converted = _convert(state, source, allow_head=True)
    else:
        raise WeightsError(f"{source} is not a ResNet38 segmentation network: it looks like "
                           f"{describe_resnet38_state_dict(state)}")
    weight = converted.get("head.conv2.weight")
    if weight is None or "head.conv1.weight" not in converted:
        raise WeightsError(f"{source} has a ResNet38 backbone but no segmentation layers (fc8_seg_conv1/2): it "
                           f"looks like {describe_resnet38_state_dict(state)}; an ImageNet backbone goes in "
                           f"weights=, a trained segmentation network in checkpoint=")
    classes = int(weight.shape[0])
    if num_classes is not None and classes != num_classes:
        raise WeightsError(
            f"{source} predicts {classes} classes (fc8_seg_conv2.weight {tuple(weight.shape)}) but the head was "
            f"built with num_classes={num_classes} (background included); build it with num_classes={classes} "
            f"or use a checkpoint trained on your classes")
    return converted
