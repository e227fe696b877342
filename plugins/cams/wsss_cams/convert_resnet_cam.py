"""The official IRN/CLIMS ResNet CAM checkpoint layout → this plugin's :class:`~wsss_cams.ResNetCAM` layout.

IRN's CAM network (jiwoon-ahn/irn ``net/resnet50_cam.py``, ``Net``; CLIMS's baseline
``res50_cam.pth`` and CLIMS's own ``CLIMS`` network share it) registers the same modules under
several names, and ``torch.save(model.state_dict())`` writes every alias::

    resnet50.conv1.weight, resnet50.bn1.*, resnet50.layer{1..4}.{i}.*     the torchvision ResNet
    stage1.0.* (conv1)  stage1.1.* (bn1)  stage1.4.* (layer1)             nn.Sequential aliases
    stage2.0.* (layer2) stage3.0.* (layer3) stage4.0.* (layer4)
    backbone.{0..3}.*   the ModuleList of the four stages (backbone.0.0.weight = conv1.weight ...)
    classifier.weight   (C, 2048, 1, 1), bias-free
    newly_added.0.weight                                                    alias of the classifier

Block names inside ``layer*`` (``conv1``, ``bn1``, ..., ``downsample.0`` conv, ``downsample.1``
BN) are torchvision's, which timm's ResNets keep, so the plugin's layout is
``backbone.<name in timm's features_only ResNet>`` + ``classifier.weight``. Any depth and width
converts (ResNet-101's ``layer3.22`` included); the model must be built with the matching timm
backbone. A ``module.`` DDP prefix is removed here too; ``{"state_dict": ...}`` wrappers by
:func:`wsss_kit.weights.load_state_dict`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from wsss_kit.errors import WeightsError
from wsss_kit.weights import register_converter
from wsss_kit.weights.converters import strip_module_prefix, unknown_layout

__all__ = ["convert_irn_resnet50_cam", "describe_state_dict", "is_irn_layout", "is_resnet_cam_layout"]

_RESNET_ALIAS = re.compile(r"^resnet\d+\.(.+)$")
"""``resnet50.<name>`` (``resnet101.`` in ResNet-101 forks) → ``<name>``."""
_STAGE_ALIASES = {
    "stage1.0.": "conv1.", "stage1.1.": "bn1.", "stage1.4.": "layer1.",
    "stage2.0.": "layer2.", "stage3.0.": "layer3.", "stage4.0.": "layer4.",
}
_LIST_ALIASES = {
    "backbone.0.0.": "conv1.", "backbone.0.1.": "bn1.", "backbone.0.4.": "layer1.",
    "backbone.1.0.": "layer2.", "backbone.2.0.": "layer3.", "backbone.3.0.": "layer4.",
}
_CLASSIFIER_KEYS = ("classifier.weight", "newly_added.0.weight")
_IMAGENET_HEAD = "fc."
"""An ImageNet ``fc`` left in by some forks; unused by the CAM network and dropped."""


def is_irn_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether ``state_dict`` is in the official IRN/CLIMS layout (any of its alias families).

    The plugin's own layout (``backbone.conv1.weight``, ``backbone.layer1...``) is not: its
    ``backbone.`` keys are followed by a name, IRN's ``backbone.`` alias by a stage number.
    """
    return any(_RESNET_ALIAS.match(k) or k.startswith(tuple(_STAGE_ALIASES) + tuple(_LIST_ALIASES))
               for k in state_dict)


def is_resnet_cam_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether ``state_dict`` is a trained ResNet CAM network, official (IRN/CLIMS) or this plugin's layout."""
    return is_irn_layout(state_dict) or _is_plugin_layout(state_dict)


def _is_plugin_layout(state: Mapping[str, Tensor]) -> bool:
    return "classifier.weight" in state and all(
        k == "classifier.weight" or (k.startswith("backbone.") and not k[len("backbone."):][:1].isdigit())
        for k in state)


def describe_state_dict(state: Mapping[str, Tensor]) -> str:
    """A few words on what a state dict looks like, for error messages."""
    keys = list(state)
    if "cls_token" in state or any(".attn.qkv." in k for k in keys):
        return ("a Vision Transformer checkpoint (MCTformer/DeiT layout: cls_token, blocks.N.attn.qkv); "
                "load MCTformer checkpoints with cams/mctformer_v1 or cams/mctformer_v2")
    if "conv1.weight" in state and any(k.startswith("layer1.") for k in keys):
        fc = " with an ImageNet head fc.*" if any(k.startswith(_IMAGENET_HEAD) for k in keys) else ""
        return (f"an ImageNet ResNet backbone (torchvision/timm layout{fc}, no CAM classifier); it "
                f"initialises the backbone: pass it as weights=, not checkpoint=")
    if is_resnet_cam_layout(state):
        return "a ResNet CAM network (IRN/CLIMS or resnet_cam layout)"
    return unknown_layout(state)


@register_converter("irn_resnet_cam")
def convert_irn_resnet50_cam(state_dict: Mapping[str, Tensor], num_classes: int | None = None,
                             source: str = "checkpoint") -> dict[str, Tensor]:
    """Official IRN/CLIMS CAM network (or this plugin's) state dict → :class:`ResNetCAM` layout.

    Args:
        state_dict: unwrapped state dict, holding the ``resnet50.*`` aliases, or only the
            ``stage*`` ones, or only ``backbone.<N>.*`` (plus the classifier under either name).
            The plugin's own layout passes through after the same checks.
        num_classes: the model's ``C``; ``None`` accepts any.
        source: names the checkpoint in messages (e.g. the file path).

    Returns:
        ``{"backbone.<timm name>": tensor, ..., "classifier.weight": (C, D, 1, 1)}``.

    Raises:
        WeightsError: not a ResNet CAM checkpoint (the message says what it looks like), keys the
            layout does not have, aliases that disagree, no classifier, or ``C`` ≠ ``num_classes``.
    """
    state = strip_module_prefix(state_dict)
    if _is_plugin_layout(state):
        converted = state
    elif is_irn_layout(state):
        converted = _from_irn(state, source)
    else:
        raise WeightsError(f"{source} is not a ResNet CAM checkpoint: it looks like {describe_state_dict(state)}")

    weight = converted["classifier.weight"]
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (1, 1):
        raise WeightsError(f"{source}: the classifier weight is {tuple(weight.shape)}; expected a 1×1 "
                           f"convolution (C, D, 1, 1)")
    converted["classifier.weight"] = weight
    classes = int(weight.shape[0])
    if num_classes is not None and classes != num_classes:
        raise WeightsError(
            f"{source} has a {classes}-class classifier (classifier.weight {tuple(weight.shape)}) but the "
            f"model was built with num_classes={num_classes}; build it with num_classes={classes} or use "
            f"a checkpoint trained on your classes")
    return converted


def _from_irn(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    families: dict[str, dict[str, tuple[str, Tensor]]] = {"resnet": {}, "stage": {}, "backbone": {}}
    classifiers: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in _CLASSIFIER_KEYS:
            classifiers[key] = value
        elif match := _RESNET_ALIAS.match(key):
            if not match.group(1).startswith(_IMAGENET_HEAD):
                families["resnet"][match.group(1)] = (key, value)
        elif (prefix := next((p for p in _STAGE_ALIASES if key.startswith(p)), None)) is not None:
            families["stage"][_STAGE_ALIASES[prefix] + key[len(prefix):]] = (key, value)
        elif (prefix := next((p for p in _LIST_ALIASES if key.startswith(p)), None)) is not None:
            families["backbone"][_LIST_ALIASES[prefix] + key[len(prefix):]] = (key, value)
        else:
            unknown.append(key)
    if unknown:
        more = f" ... (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise WeightsError(
            f"{source} looks like an IRN/CLIMS network but has keys its ResNet CAM network does not: "
            f"{', '.join(unknown[:5])}{more}; is it another network of that code (e.g. IRNet's "
            f"displacement/boundary network)? Only the CAM network converts")
    main_name, main = next((n, f) for n, f in families.items() if f)
    for other_name, other in families.items():
        if other_name == main_name or not other:
            continue
        for name, (key, value) in other.items():
            if name not in main:
                raise WeightsError(f"{source}: {key!r} has no counterpart among the {main_name} aliases "
                                   f"(expected the same tensor under {main_name}-style names); the file "
                                   f"was edited or is another network")
            main_key, main_value = main[name]
            if main_value.shape != value.shape or not torch.equal(main_value, value):
                raise WeightsError(f"{source}: the aliases {main_key!r} and {key!r} of one module hold "
                                   f"different values; the file was edited after saving")
    if not classifiers:
        raise WeightsError(f"{source} has a ResNet backbone in the IRN/CLIMS layout but no classifier "
                           f"(classifier.weight / newly_added.0.weight); a trained CAM network has one")
    values = list(classifiers.values())
    if len(values) == 2 and (values[0].shape != values[1].shape or not torch.equal(values[0], values[1])):
        raise WeightsError(f"{source}: classifier.weight and newly_added.0.weight differ; they are aliases "
                           f"of one layer in the official network")
    converted = {f"backbone.{name}": value for name, (_, value) in main.items()}
    converted["classifier.weight"] = values[0]
    return converted
