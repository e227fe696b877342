"""Argument checks shared by the CAM networks of this plugin (ResNet CAM, MCTformer)."""

from __future__ import annotations

import difflib

import timm
import torch

from wsss_kit.shapes import check_shape

__all__ = ["check_backbone_name", "check_images"]


def check_images(images: torch.Tensor) -> None:
    """``images`` must be a tensor ``(B, 3, H, W)`` (RGB in [0, 1]); TypeError / ValueError otherwise."""
    check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")


def check_backbone_name(name: str) -> None:
    """``name`` (``model`` or ``model.tag``) must be a timm model; the error lists close names."""
    if not isinstance(name, str) or not timm.is_model(name.split(".", 1)[0]):
        close = difflib.get_close_matches(str(name).split(".", 1)[0], timm.list_models(), n=3, cutoff=0.7)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ValueError(
            f"backbone {name!r} is not a timm model{hint}; use a name from timm.list_models(), "
            f"e.g. 'resnet50', 'resnet18' or 'test_resnet'"
        )
