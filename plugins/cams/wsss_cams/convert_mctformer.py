"""Checkpoint layouts around MCTformer: the official V1/V2 checkpoints and ImageNet ViT initialisations.

Official layout (xulianuwa/MCTformer at commit 96065977, saved as ``{"model": state_dict}``)::

    cls_token                   (1, C, D)        one token per class
    pos_embed                   (1, C + N, D)    class tokens first, then the 14×14 patch grid
    patch_embed.proj.{weight,bias}
    blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}
    norm.{weight,bias}          final norm: present but unused by the class logits
    head.{weight,bias}          V2: Conv2d(D, C, 3, padding=1); V1: an unused Linear(D, C)

This plugin keeps those names, so conversion only drops the unused tensors and checks that the
checkpoint is the right kind: class count, V1 vs V2, and not some other network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from wsss_kit.errors import WeightsError
from wsss_kit.weights import register_converter
from wsss_kit.weights.converters import unknown_layout

from .vit_tokens import resize_pos_embed_to

__all__ = ["checkpoint_version", "convert_deit_classifier", "convert_mctformer"]

_RESNET_HINTS = ("resnet50.conv1.weight", "stage1.0.weight", "layer1.0.conv1.weight", "conv1.weight")


def _describe_foreign(state: Mapping[str, Tensor]) -> str:
    if any(k in state for k in _RESNET_HINTS) or any(k.startswith(("resnet50.", "backbone.layer")) for k in state):
        return "a ResNet CAM checkpoint (IRN/CLIMS or resnet_cam layout); load it with cams/resnet_cam"
    return unknown_layout(state)


def checkpoint_version(state: Mapping[str, Tensor]) -> int:
    """1 or 2: V2 checkpoints carry the patch-token convolution ``head.weight`` of shape ``(C, D, 3, 3)``."""
    head = state.get("head.weight")
    return 2 if head is not None and head.ndim == 4 else 1


@register_converter("mctformer")
def convert_mctformer(state_dict: Mapping[str, Tensor], version: int | None = None,
                      num_classes: int | None = None, source: str = "checkpoint") -> dict[str, Tensor]:
    """Official MCTformer (or this plugin's) state dict → this plugin's layout.

    Args:
        state_dict: unwrapped state dict (``wsss_kit.weights.load_state_dict`` removes ``{"model": ...}``
            and ``module.`` prefixes).
        version: the model's version (1 or 2); ``None`` accepts either.
        num_classes: the model's ``C``; ``None`` accepts any.
        source: the file name, for messages.

    Raises:
        WeightsError: another architecture, an ImageNet ViT (one CLS token), a class-count mismatch,
            or a V1 checkpoint for a V2 model and vice versa.
    """
    state = dict(state_dict)
    if "cls_token" not in state or "pos_embed" not in state or "blocks.0.attn.qkv.weight" not in state:
        raise WeightsError(f"{source} is not an MCTformer checkpoint: it looks like {_describe_foreign(state)}")
    tokens = int(state["cls_token"].shape[1])
    if tokens == 1:
        raise WeightsError(f"{source} has a single CLS token: it is an ImageNet ViT classifier, not a trained "
                           f"MCTformer; pass it as weights= (the ImageNet initialisation), not checkpoint=")
    if num_classes is not None and tokens != num_classes:
        raise WeightsError(f"{source} has {tokens} class tokens (a {tokens}-class MCTformer) but the model "
                           f"was built with num_classes={num_classes}; build it with num_classes={tokens} "
                           f"or use a checkpoint trained on your classes")
    found = checkpoint_version(state)
    if version is not None and found != version:
        if found == 2:
            raise WeightsError(f"{source} is an MCTformer V2 checkpoint (it has the patch-token conv head); "
                               f"load it with cams/mctformer_v2")
        raise WeightsError(f"{source} is an MCTformer V1 checkpoint (no patch-token conv head); "
                           f"load it with cams/mctformer_v1")
    unused = ("norm.", "head_dist.", "fc_norm.") + (("head.",) if found == 1 else ())
    return {k: v for k, v in state.items() if not k.startswith(unused)}


def convert_deit_classifier(img_size: int) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """Converter for an ImageNet DeiT/ViT classifier loaded as MCTformer's initialisation.

    Drops the classifier heads and resizes the patch position grid to ``img_size`` (bicubic, as the
    official fine-tuning does); the CLS token is replicated per class afterwards by the model.
    """

    def convert(state: dict[str, Tensor]) -> dict[str, Tensor]:
        if "cls_token" not in state or "pos_embed" not in state or "patch_embed.proj.weight" not in state:
            raise WeightsError(f"MCTformer weights= expects an ImageNet ViT/DeiT classifier; the file looks like "
                               f"{_describe_foreign(state)}")
        tokens = int(state["cls_token"].shape[1])
        if tokens != 1:
            raise WeightsError(f"MCTformer weights= got a checkpoint with {tokens} class tokens, a trained "
                               f"MCTformer; pass it as checkpoint=, not weights=")
        if "dist_token" in state:
            raise WeightsError("MCTformer weights= got a distilled DeiT (it has a dist_token); use the "
                               "non-distilled DeiT weights")
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        side = img_size // patch
        out = {k: v for k, v in state.items() if not k.startswith(("head.", "head_dist."))}
        out["pos_embed"] = resize_pos_embed_to(state["pos_embed"], 1, (side, side))
        return out

    return convert
