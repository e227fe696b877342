"""The baseline CAM network: a (dilated) timm backbone, global average pooling and a 1×1 classifier.

This is the network IRN, CLIMS and POLE start from: ResNet-50 with output stride 16, the stem
frozen, a bias-free classifier trained with the multilabel soft margin loss, CAMs taken by
applying the classifier to the last feature map at every position, aggregated over scales
(1, 0.5, 1.5, 2) and the flipped image, rectified and max-normalised per class.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Sequence

import timm
import torch
from torch import nn

import wsss_kit
from wsss_kit.cam_ops import multiscale_cams
from wsss_kit.weights import create_timm_model

from .losses import multilabel_soft_margin_loss

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STEM_NAMES = ("conv1", "bn1", "conv_stem", "stem")
"""Top-level backbone modules that form the stem: timm ResNets use ``conv1``/``bn1`` (a deep stem
keeps its convolutions inside ``conv1``), EfficientNets ``conv_stem``/``bn1``, most others ``stem``
(flattened to ``stem_0``, ``stem_1``... by ``features_only``)."""

OUTPUT_STRIDES = (8, 16, 32)


class ResNetCAM(wsss_kit.CAMGenerator):
    """CAM generator: ``backbone → GAP → 1×1 conv (no bias)`` trained with multilabel soft margin.

    Args:
        num_classes: ``C``, the number of foreground classes.
        backbone: a timm model name that supports ``features_only`` and ``output_stride``
            (``resnet50`` as in the official code; ``resnet18``, ``test_resnet`` for tests).
        weights: a local checkpoint path (or what :func:`wsss_kit.weights.create_timm_model`
            accepts); ``None`` initialises the backbone at random.
        output_stride: 8, 16 (default, as the official ResNet-50 with strides 2,2,2,1) or 32.
        freeze_stem: keep the stem's parameters fixed and its BatchNorm in eval mode.
        classifier_lr_mult: learning-rate multiplier of the classifier in :meth:`param_groups`.
        scales: default CAM inference scales.
        flip: default CAM inference flip.

    Inputs are images ``(B, 3, H, W)`` RGB in [0, 1]; ImageNet normalisation happens inside.
    """

    wsss_api_version = "1.0"

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        weights: str | os.PathLike[str] | None = None,
        output_stride: int = 16,
        freeze_stem: bool = True,
        classifier_lr_mult: float = 10.0,
        scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
        flip: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (foreground classes); got {num_classes!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
        if not classifier_lr_mult > 0:
            raise ValueError(f"classifier_lr_mult must be positive; got {classifier_lr_mult!r}")
        scales = tuple(float(s) for s in scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers; got {scales}")
        _check_backbone_name(backbone)

        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.freeze_stem = bool(freeze_stem)
        self.classifier_lr_mult = float(classifier_lr_mult)
        self.scales = scales
        self.flip = bool(flip)

        try:
            self.backbone = create_timm_model(
                backbone, weights=weights, features_only=True, out_indices=(-1,), output_stride=output_stride
            )
        except (TypeError, RuntimeError) as exc:
            # timm rejects features_only/output_stride for architectures without them (e.g. ViTs)
            raise ValueError(
                f"backbone {backbone!r} cannot be built with features_only=True and "
                f"output_stride={output_stride}: {type(exc).__name__}: {exc}; use a CNN that supports "
                f"both, such as timm's resnets"
            ) from exc
        self.feature_dim = int(self.backbone.feature_info.channels()[-1])
        self.classifier = nn.Conv2d(self.feature_dim, num_classes, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self._stem: list[nn.Module] = []
        if self.freeze_stem:
            self._stem = [m for name, m in self.backbone.named_children() if _is_stem(name)]
            if not self._stem:
                children = ", ".join(name for name, _ in self.backbone.named_children())
                raise ValueError(
                    f"freeze_stem=True but backbone {backbone!r} has no stem module named "
                    f"{'/'.join(STEM_NAMES)} (its top-level modules: {children}); pass freeze_stem=False"
                )
            for module in self._stem:
                module.requires_grad_(False)
            self.train(self.training)

    # ------------------------------------------------------------------ network
    def train(self, mode: bool = True) -> "ResNetCAM":
        """Set train/eval mode; a frozen stem stays in eval mode so its BatchNorm statistics are fixed."""
        super().train(mode)
        for module in getattr(self, "_stem", ()):
            module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Last backbone feature map ``(B, D, H/s, W/s)`` (``s`` = output stride) for images in [0, 1]."""
        _check_images(images)
        return self.backbone((images - self.mean) / self.std)[-1]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Classify.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            labels: ``(B, C)`` multi-hot, or ``None``.

        Returns:
            ``{"logits": (B, C)}``, plus ``"loss"`` (multilabel soft margin, scalar) with labels.
        """
        feats = self.features(images)
        logits = self.classifier(feats.mean(dim=(2, 3), keepdim=True)).flatten(1)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = multilabel_soft_margin_loss(logits, labels)
        return out

    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised class maps ``(B, C, H/s, W/s)``: the classifier applied at every position."""
        return self.classifier(self.features(images))

    def cams(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
    ) -> torch.Tensor:
        """CAMs ``(B, C, H, W)`` in [0, 1], zero for absent classes.

        Summed over ``scales`` (default: the constructor's) and the flipped images (``flip``,
        default: the constructor's), rectified, masked by ``labels`` and max-normalised per class.
        Runs in whatever mode the module is in and keeps gradients; call ``eval()`` and wrap in
        ``torch.no_grad()`` for inference.
        """
        return multiscale_cams(
            self.raw_cams,
            images,
            labels,
            scales=self.scales if scales is None else scales,
            flip=self.flip if flip is None else flip,
            normalize="max",
        )

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: backbone (trainable part) at ``lr``, classifier at
        ``lr * classifier_lr_mult``. Each group carries its ``lr_mult`` for poly/cosine schedulers."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        classifier = [p for p in self.classifier.parameters() if p.requires_grad]
        return [
            {"params": backbone, "lr": lr, "lr_mult": 1.0},
            {"params": classifier, "lr": lr * self.classifier_lr_mult, "lr_mult": self.classifier_lr_mult},
        ]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, backbone={self.backbone_name!r}, "
            f"output_stride={self.output_stride}, freeze_stem={self.freeze_stem}"
        )


def _is_stem(name: str) -> bool:
    return name in STEM_NAMES or name.startswith("stem_")


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (B, 3, H, W); got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB in [0, 1]; got shape {tuple(images.shape)}")


def _check_backbone_name(name: str) -> None:
    if not isinstance(name, str) or not timm.is_model(name.split(".", 1)[0]):
        close = difflib.get_close_matches(str(name).split(".", 1)[0], timm.list_models(), n=3, cutoff=0.7)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise ValueError(
            f"backbone {name!r} is not a timm model{hint}; use a name from timm.list_models(), "
            f"e.g. 'resnet50', 'resnet18' or 'test_resnet'"
        )
