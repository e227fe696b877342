"""DeepLabV1 on WideResNet-38: the retrain head of PSA, MCTformer and WeakCLIP.

Facts from xulianuwa/MCTformer (``seg/network/resnet38_seg.py``, ``seg/train_seg.py``,
``seg/infer_seg.py``) and jiwoon-ahn/psa (``network/resnet38d.py``):

* backbone: the dilated ResNet38 (output stride 8, 4096 channels), see :mod:`.wide_resnet38`;
* head: ``fc8_seg_conv1`` 3×3 conv 4096→512, dilation 12, padding 12, bias → ReLU →
  ``fc8_seg_conv2`` 3×3 conv 512→K, dilation 12, padding 12, bias; no dropout between them;
  weights Xavier-uniform, biases PyTorch's default initialisation;
* logits are upsampled (bilinear, ``align_corners=False``) to the crop for the loss;
* input: RGB / 255 normalised with the ImageNet mean and std (the same as for the ImageNet
  ResNet38 weights);
* frozen: every BatchNorm is in eval mode with ``requires_grad = False`` on its affine
  parameters, and the stem convolution ``conv1a`` is not trained (``not_training``); Dropout2d
  inside the bottlenecks stays active in training;
* learning rates: the two ``fc8`` layers at 10× the backbone's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_kit.batchnorm import freeze_batchnorm, freeze_batchnorm_params
from wsss_kit.shapes import check_shape
from wsss_kit.weights import load_checkpoint

from .convert_wr38 import convert_mctformer_resnet38_seg, convert_resnet38_imagenet
from .wide_resnet38 import WR38_BOTTLENECK_WIDTHS, WR38_DEPTHS, WR38_DROPOUTS, WR38_WIDTHS, WideResNet38

__all__ = ["DeepLabV1WR38", "SegmentationHead"]

_WR38_FILES = "timm and open_clip have no ResNet38; pass a path or 'released:resnet38_imagenet'"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationHead(nn.Module):
    """Two dilated 3×3 convolutions: ``in → width`` → ReLU → ``width → K`` (``fc8_seg_conv1/2``)."""

    def __init__(self, in_ch: int, num_classes: int, width: int = 512, dilation: int = 12) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=dilation, dilation=dilation, bias=True)
        self.conv2 = nn.Conv2d(width, num_classes, 3, padding=dilation, dilation=dilation, bias=True)
        nn.init.xavier_uniform_(self.conv1.weight)
        nn.init.xavier_uniform_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class DeepLabV1WR38(wsss_kit.RetrainHead):
    """DeepLabV1 with a WideResNet-38 backbone (``heads/deeplab_v1_wr38``).

    ``forward(images (B, 3, H, W) RGB in [0, 1]) -> logits (B, K, H, W)`` for any ``H, W``
    (features at ``⌈H/8⌉ × ⌈W/8⌉``, upsampled bilinearly).

    Args:
        num_classes: ``K``, classes including background (21 for VOC).
        weights: backbone initialisation: the PSA-converted ResNet38 ImageNet weights (e.g.
            ``released:resnet38_imagenet``), a path, or None (random). The head layers keep their
            random initialisation.
        checkpoint: a trained network, loaded strictly after ``weights``: MCTformer's
            ``resnet38_seg`` state dict or this head's own.
        stem_width, widths, depths, bottleneck_widths, dropouts: the trunk's sizes (see
            :class:`~wsss_deeplab.wide_resnet38.WideResNet38`); the defaults are the published ResNet38.
        head_width: channels between the two head convolutions (512).
        head_dilation: dilation (and padding) of both head convolutions (12).
        freeze_bn: keep BatchNorm frozen (official); False trains it like any layer.
        freeze_stem: do not train the stem convolution (official).
        head_lr_mult: learning-rate multiplier of the head layers in :meth:`param_groups` (10).
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained checkpoint holds the backbone: its ImageNet file (``weights``) is then not needed."""

    def __init__(
        self,
        num_classes: int,
        weights: str | os.PathLike[str] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        stem_width: int = 64,
        widths: Sequence[Sequence[int]] = WR38_WIDTHS,
        depths: Sequence[int] = WR38_DEPTHS,
        bottleneck_widths: Sequence[int] = WR38_BOTTLENECK_WIDTHS,
        dropouts: Sequence[float] = WR38_DROPOUTS,
        head_width: int = 512,
        head_dilation: int = 12,
        freeze_bn: bool = True,
        freeze_stem: bool = True,
        head_lr_mult: float = 10.0,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (K = foreground classes + background); "
                             f"got {num_classes!r}")
        if not head_lr_mult > 0:
            raise ValueError(f"head_lr_mult must be positive; got {head_lr_mult!r}")
        if int(head_dilation) < 1 or int(head_width) < 1:
            raise ValueError(f"head_width and head_dilation must be positive; got {head_width!r}, {head_dilation!r}")
        self.num_classes = num_classes
        self.freeze_bn = bool(freeze_bn)
        self.freeze_stem = bool(freeze_stem)
        self.head_lr_mult = float(head_lr_mult)
        self.backbone = WideResNet38(stem_width, widths, depths, bottleneck_widths, dropouts)
        self.head = SegmentationHead(self.backbone.out_channels, num_classes, int(head_width), int(head_dilation))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_backbone(weights)
        if checkpoint is not None:
            self.load_weights(checkpoint)
        if self.freeze_bn:
            freeze_batchnorm_params(self.backbone)
        if self.freeze_stem:
            self.backbone.stem.requires_grad_(False)
        self.train(self.training)

    # ------------------------------------------------------------------ weights
    def load_backbone(self, weights: str | os.PathLike[str]) -> None:
        """Load ResNet38 ImageNet weights (PSA layout or this plugin's) into the backbone, strictly."""
        def convert(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
            return convert_resnet38_imagenet(state, source=source) | _own(self, "head.")

        load_checkpoint(self, weights, converter=convert, purpose="ResNet38 backbone weights", hint=_WR38_FILES)

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained network (MCTformer's ``resnet38_seg`` or this head's layout), strictly."""
        load_checkpoint(self, checkpoint, purpose="DeepLabV1-ResNet38 checkpoint", hint=_WR38_FILES,
                        converter=functools.partial(convert_mctformer_resnet38_seg, num_classes=self.num_classes))

    # ------------------------------------------------------------------ modes and groups
    def train(self, mode: bool = True) -> "DeepLabV1WR38":
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone at ``lr`` (``lr_mult`` 1), the two head convolutions at ``lr * head_lr_mult``;
        frozen parameters are left out."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for p in self.head.parameters() if p.requires_grad]
        return [
            {"params": backbone, "lr": lr, "lr_mult": 1.0},
            {"params": head, "lr": lr * self.head_lr_mult, "lr_mult": self.head_lr_mult},
        ]

    # ------------------------------------------------------------------ forward
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, C, ⌈H/8⌉, ⌈W/8⌉)`` of images in [0, 1]."""
        return self.backbone((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for images ``(B, 3, H, W)`` RGB in [0, 1]."""
        _check_images(images)
        logits = self.head(self.features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, freeze_bn={self.freeze_bn}, freeze_stem={self.freeze_stem}, "
                f"head_lr_mult={self.head_lr_mult}")


def _own(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def _check_images(images: Any) -> None:
    check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")
