"""The baseline CAM network: a timm ResNet, global average pooling and a bias-free 1×1 classifier.

This is the network IRN, CLIMS and POLE start from, with defaults that reproduce IRN's
``net/resnet50_cam.py`` (the network behind CLIMS's ``res50_cam.pth``):

- ResNet-50 with strides (2, 2, 2, 1): ``layer4`` keeps the resolution of ``layer3`` *without*
  dilation, output stride 16 (``dilate_last_stage=False``);
- every BatchNorm normalises with its running statistics, in training too (IRN's
  ``FixedBatchNorm``, ``fixed_bn=True``); their affine parameters train;
- the stem (``conv1``, ``bn1``) is frozen, and IRN detaches the output of ``stage2``, so
  ``layer1`` and ``layer2`` receive no gradient either (``freeze_stem=True``, ``frozen_stages=2``);
- the classifier (10× learning rate) is trained with the multilabel soft margin loss on the
  globally average-pooled features;
- CAMs: the classifier applied at every position, ReLU, summed over scales (1, 0.5, 1.5, 2) and
  the flipped image, each map upsampled to the image size rounded up to a multiple of the output
  stride and cropped (IRN's "high-res" CAM, ``upsample="strided"``), max-normalised per class
  with ε = 1e-5.

``checkpoint=`` loads a trained CAM network, in this layout or the official one (converted by
:func:`wsss_cams.convert_resnet_cam.convert_irn_resnet50_cam`), e.g. ``checkpoint="released:irn_res50_cam"``.
The input-resize difference from the official code (PIL bicubic on uint8 there, bilinear on float
tensors here) is described in ``docs/paper_vs_code.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Sequence, cast

import torch
from timm.models import FeatureInfo
from torch import nn

import wsss_kit
from wsss_kit.batchnorm import freeze_batchnorm
from wsss_kit.cam_ops import multiscale_cams
from wsss_kit.errors import WeightsError
from wsss_kit.input_space import check_input_space, normalize_input
from wsss_kit.weights import create_timm_model, load_checkpoint, load_state_dict, resolve

from .checks import check_backbone_name, check_images
from .convert_resnet_cam import convert_irn_resnet50_cam, is_resnet_cam_layout
from .losses import multilabel_soft_margin_loss
from .resnet_stages import remove_stage_stride, resnet_stages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

STEM_NAMES = ("conv1", "bn1", "conv_stem", "stem")
"""Top-level backbone modules that form the stem: timm ResNets use ``conv1``/``bn1`` (a deep stem
keeps its convolutions inside ``conv1``), EfficientNets ``conv_stem``/``bn1``, most others ``stem``
(flattened to ``stem_0``, ``stem_1``... by ``features_only``)."""

OUTPUT_STRIDES = (8, 16, 32)
UPSAMPLE_MODES = ("strided", "image")
"""``strided``: IRN's high-res CAM (resize to the image size rounded up to a multiple of the output
stride, then crop); ``image``: resize every pass straight to the image size."""
CAM_EPS = 1e-5
"""The normaliser's ε in IRN/CLIMS's ``make_cam``: ``cam / (max + 1e-5)``."""
RESERVED_BACKBONE_KWARGS = ("features_only", "out_indices", "output_stride", "pretrained", "pretrained_cfg")

_KNOWN_DEPTHS: dict[tuple[str, tuple[int, ...]], str] = {
    ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152", ("bottleneck", (2, 2, 2, 2)): "resnet26",
    ("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
}


class ResNetCAM(wsss_kit.CAMGenerator):
    """CAM generator: ``backbone → GAP → 1×1 conv (no bias)`` trained with multilabel soft margin.

    Args:
        num_classes: ``C``, the number of foreground classes.
        backbone: a timm model name that supports ``features_only`` (``resnet50`` as in the
            official code; ``resnet101``; ``resnet18``, ``test_resnet`` for tests).
        weights: the backbone's initialisation (ImageNet): a local file, ``released:<name>``
            (e.g. ``released:torchvision_resnet50_imagenet``) or ``timm:<model>.<tag>``; ``None``
            initialises at random. See :func:`wsss_kit.weights.create_timm_model`.
        output_stride: 8, 16 (default, the official strides 2,2,2,1) or 32.
        freeze_stem: keep the stem's parameters fixed and its BatchNorm in eval mode.
        classifier_lr_mult: learning-rate multiplier of the classifier in :meth:`param_groups`.
        scales: default CAM inference scales.
        flip: default CAM inference flip.
        checkpoint: a trained CAM network (backbone and classifier), loaded strictly after
            construction and overriding ``weights``: this plugin's layout, or the official IRN/CLIMS
            layout (detected and converted), e.g. ``released:irn_res50_cam``.
        dilate_last_stage: how output strides 16/8 are reached. ``False`` (official IRN/CLIMS):
            the last stage (``layer4``; ``layer3`` too at 8) drops its stride and keeps dilation 1,
            IRN's ``strides=(2, 2, 2, 1)`` (``(2, 2, 1, 1)`` at 8); timm ResNets only. ``True``:
            timm's ``output_stride``, which dilates those stages (DeepLab style; a larger
            receptive field, same weights). Must be ``False`` at output stride 32.
        fixed_bn: every backbone BatchNorm uses its running statistics, in training too, and
            never updates them (IRN's ``FixedBatchNorm``); their weight and bias still train
            (except in frozen parts). ``False``: ordinary BatchNorm (batch statistics in training).
        frozen_stages: how many residual stages after the stem (``layer1``, ``layer2``...) get no
            gradient, with their BatchNorms in eval mode. 2 mirrors IRN, whose training forward
            detaches the output of ``layer2``; CLIMS's own network uses 0. ``None`` (default): 2
            with ``freeze_stem=True`` (official), 0 with ``freeze_stem=False`` (train everything).
            A positive value needs ``freeze_stem=True`` (the stem lies before those stages) and a
            timm ResNet.
        upsample: ``"strided"`` (official): every CAM pass is resized to the image size rounded up
            to a multiple of ``output_stride``, summed and cropped to the image (IRN's high-res
            CAM); ``"image"``: resized straight to the image size.
        backbone_kwargs: extra keywords for ``timm.create_model`` (e.g. ``layers``, ``channels``
            for narrow test ResNets, ``drop_path_rate``); not ``features_only``/``out_indices``/
            ``output_stride``, which this class sets.
        input_space: ``"unit"`` (default): images are RGB in [0, 1] and ImageNet normalisation
            happens inside; ``"normalized"``: images are already ``(x − mean) / std`` with ImageNet's
            mean/std (:attr:`mean`, :attr:`std`), as the official data loaders feed them, and go to
            the backbone as they are. For your own tensors; wsss_kit's datasets yield [0, 1] images.

    Inputs are images ``(B, 3, H, W)``, in ``input_space``.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained checkpoint holds the backbone: its ImageNet file (``weights``) is then not needed."""

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
        checkpoint: str | os.PathLike[str] | None = None,
        dilate_last_stage: bool = False,
        fixed_bn: bool = True,
        frozen_stages: int | None = None,
        upsample: str = "strided",
        backbone_kwargs: Mapping[str, Any] | None = None,
        input_space: str = "unit",
    ) -> None:
        super().__init__()
        self.input_space = check_input_space(input_space)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (foreground classes); got {num_classes!r}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
        if dilate_last_stage and output_stride == 32:
            raise ValueError("dilate_last_stage=True needs output_stride 16 or 8: at output stride 32 every "
                             "stage keeps its stride and nothing is dilated; pass dilate_last_stage=False")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(map(repr, UPSAMPLE_MODES))}; got {upsample!r}")
        if frozen_stages is None:
            frozen_stages = 2 if freeze_stem else 0
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or frozen_stages < 0:
            raise ValueError(f"frozen_stages must be an int >= 0 (residual stages after the stem); "
                             f"got {frozen_stages!r}")
        if frozen_stages > 0 and not freeze_stem:
            raise ValueError(f"freeze_stem=False contradicts frozen_stages={frozen_stages}: the stem comes "
                             f"before the frozen stages and gets no gradient through them; pass "
                             f"frozen_stages=0 to train the whole backbone")
        if not classifier_lr_mult > 0:
            raise ValueError(f"classifier_lr_mult must be positive; got {classifier_lr_mult!r}")
        scales = tuple(float(s) for s in scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers; got {scales}")
        backbone_kwargs = dict(backbone_kwargs or {})
        reserved = sorted(set(backbone_kwargs) & set(RESERVED_BACKBONE_KWARGS))
        if reserved:
            raise ValueError(f"backbone_kwargs must not set {', '.join(reserved)}: ResNetCAM sets "
                             f"{', '.join(RESERVED_BACKBONE_KWARGS[:3])} itself (use output_stride=...)")
        check_backbone_name(backbone)

        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.dilate_last_stage = bool(dilate_last_stage)
        self.fixed_bn = bool(fixed_bn)
        self.freeze_stem = bool(freeze_stem)
        self.frozen_stages = frozen_stages
        self.upsample = upsample
        self.classifier_lr_mult = float(classifier_lr_mult)
        self.scales = scales
        self.flip = bool(flip)

        self.backbone = self._build_backbone(backbone, weights, backbone_kwargs)
        # timm types its models as nn.Module; a features_only one carries a FeatureInfo
        info = cast(FeatureInfo, self.backbone.feature_info)
        self.feature_dim = int(info.channels()[-1])
        self.classifier = nn.Conv2d(self.feature_dim, num_classes, kernel_size=1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self._frozen: list[nn.Module] = []
        if self.freeze_stem:
            stem = [m for name, m in self.backbone.named_children() if _is_stem(name)]
            if not stem:
                children = ", ".join(name for name, _ in self.backbone.named_children())
                raise ValueError(
                    f"freeze_stem=True but backbone {backbone!r} has no stem module named "
                    f"{'/'.join(STEM_NAMES)} (its top-level modules: {children}); pass freeze_stem=False"
                )
            self._frozen += stem
        if frozen_stages:
            stages = resnet_stages(self.backbone)
            if len(stages) < frozen_stages:
                raise ValueError(
                    f"frozen_stages={frozen_stages} but backbone {backbone!r} has "
                    f"{len(stages)} residual stages named layer1, layer2, ... (timm ResNets have 4); "
                    f"pass frozen_stages=0" + (f" to {len(stages)}" if stages else ""))
            self._frozen += [module for _, module in stages[:frozen_stages]]
        for module in self._frozen:
            module.requires_grad_(False)
        self.train(self.training)
        if checkpoint is not None:
            self.load_weights(checkpoint)

    # ------------------------------------------------------------------ construction
    def _build_backbone(self, backbone: str, weights: Any, backbone_kwargs: dict[str, Any]) -> nn.Module:
        timm_stride = self.output_stride if self.dilate_last_stage else 32
        try:
            model = create_timm_model(backbone, weights=weights, features_only=True, out_indices=(-1,),
                                      output_stride=timm_stride, **backbone_kwargs)
        except WeightsError as exc:
            hint = _cam_checkpoint_as_weights(weights)
            if hint is None:
                raise
            raise hint from exc
        except (TypeError, RuntimeError) as exc:
            # timm rejects features_only/output_stride for architectures without them (e.g. ViTs)
            extra = f" and backbone_kwargs={backbone_kwargs}" if backbone_kwargs else ""
            raise ValueError(
                f"backbone {backbone!r} cannot be built with features_only=True and "
                f"output_stride={timm_stride}{extra}: {type(exc).__name__}: {exc}; use a CNN that supports "
                f"both, such as timm's resnets"
            ) from exc
        if not self.dilate_last_stage and self.output_stride < 32:
            undo = {16: 1, 8: 2}[self.output_stride]
            stages = resnet_stages(model)
            if len(stages) < undo + 1:
                raise ValueError(
                    f"dilate_last_stage=False (the official IRN layout) removes the stride of the last "
                    f"{undo} stage(s) of a timm ResNet (layer1..layer4), but backbone {backbone!r} has "
                    f"{len(stages)} such stages; pass dilate_last_stage=True for timm's dilated "
                    f"output_stride={self.output_stride}, or output_stride=32")
            for name, stage in stages[-undo:]:
                remove_stage_stride(stage, name)
        return model

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained CAM network strictly: this plugin's layout or the official IRN/CLIMS one.

        Raises:
            WeightsError: missing file, another architecture (the message says which), another
                class count, depth or width than the model's.
        """
        load_checkpoint(self, checkpoint, converter=self._convert_checkpoint, purpose="ResNet CAM checkpoint",
                        hint="a pretrained backbone tag goes in weights= (the backbone initialisation)")

    def _convert_checkpoint(self, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """IRN/CLIMS or this layout → this layout, refusing another backbone width or depth by name."""
        converted = convert_irn_resnet50_cam(state, num_classes=self.num_classes, source=source)
        in_dim = int(converted["classifier.weight"].shape[1])
        if in_dim != self.feature_dim:
            raise WeightsError(f"{source}: its classifier reads {in_dim}-channel features but backbone "
                               f"{self.backbone_name!r} gives {self.feature_dim}; build the model with the "
                               f"checkpoint's backbone")
        found, own = _resnet_depth(converted), _resnet_depth(self.state_dict())
        if found and own and found != own:
            hint = _KNOWN_DEPTHS.get(found)
            raise WeightsError(
                f"{source} holds a ResNet with {found[0]} blocks {found[1]} per stage"
                + (f" ({hint})" if hint else "") + f" but backbone {self.backbone_name!r} has {own[0]} blocks "
                f"{own[1]}; build the model with " + (f"backbone={hint!r}" if hint else "the matching backbone"))
        return converted

    # ------------------------------------------------------------------ network
    def train(self, mode: bool = True) -> "ResNetCAM":
        """Set train/eval mode. Frozen parts (stem, ``frozen_stages``) always stay in eval mode, and
        with ``fixed_bn`` every backbone BatchNorm does, so running statistics are used and kept."""
        super().train(mode)
        if getattr(self, "fixed_bn", False):
            freeze_batchnorm(self.backbone)
        for module in getattr(self, "_frozen", ()):
            module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Last backbone feature map ``(B, D, ⌈H/s⌉, ⌈W/s⌉)`` (``s`` = output stride) for images in
        ``input_space`` ([0, 1] by default)."""
        check_images(images)
        return self.backbone(normalize_input(images, self.input_space, self.mean, self.std))[-1]

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
        """Unnormalised class maps ``(B, C, ⌈H/s⌉, ⌈W/s⌉)``: the classifier applied at every position."""
        return self.classifier(self.features(images))

    def cams(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
    ) -> torch.Tensor:
        """CAMs ``(B, C, H, W)`` in [0, 1], zero for absent classes.

        Every pass (``scales``, default: the constructor's; with ``flip``, default: the
        constructor's, also the mirrored image, mirrored back) is rectified and resized to the
        output size of ``upsample`` (official: ``(⌈H/s⌉·s, ⌈W/s⌉·s)``, cropped to ``H × W`` after
        summing), masked by ``labels`` and divided by its per-class maximum + 1e-5. See
        :func:`wsss_kit.cam_ops.multiscale_cams`. Runs in whatever mode the module is in and keeps
        gradients; call ``eval()`` and wrap in ``torch.no_grad()`` for inference.
        """
        return multiscale_cams(
            self.raw_cams,
            images,
            labels,
            scales=self.scales if scales is None else scales,
            flip=self.flip if flip is None else flip,
            normalize="max",
            eps=CAM_EPS,
            upsample_stride=self.output_stride if self.upsample == "strided" else None,
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
            f"output_stride={self.output_stride}, dilate_last_stage={self.dilate_last_stage}, "
            f"fixed_bn={self.fixed_bn}, freeze_stem={self.freeze_stem}, frozen_stages={self.frozen_stages}, "
            f"upsample={self.upsample!r}, input_space={self.input_space!r}"
        )


def _is_stem(name: str) -> bool:
    return name in STEM_NAMES or name.startswith("stem_")


def _resnet_depth(state: Mapping[str, torch.Tensor]) -> tuple[str, tuple[int, ...]] | None:
    """``("bottleneck" | "basic", blocks per stage)`` of a ResNet state dict in this plugin's layout."""
    blocks: dict[int, int] = {}
    for key in state:
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "backbone" and parts[1].startswith("layer") and parts[2].isdigit():
            stage = int(parts[1][len("layer"):]) if parts[1][len("layer"):].isdigit() else None
            if stage is not None:
                blocks[stage] = max(blocks.get(stage, 0), int(parts[2]) + 1)
    if not blocks:
        return None
    kind = "bottleneck" if any(k.startswith("backbone.layer1.0.conv3.") for k in state) else "basic"
    return kind, tuple(blocks[s] for s in sorted(blocks))


def _cam_checkpoint_as_weights(weights: Any) -> WeightsError | None:
    """A clearer error when the backbone ``weights`` that failed to load are a trained CAM network."""
    try:
        path = resolve(weights, purpose="ResNet CAM backbone weights")
        state = load_state_dict(path) if not isinstance(path, str) else None
    except WeightsError:
        return None
    if state is None or not is_resnet_cam_layout(state):
        return None
    return WeightsError(
        f"backbone weights {path} hold a trained ResNet CAM network (IRN/CLIMS or resnet_cam layout), "
        f"not a backbone initialisation: pass it as checkpoint=, not weights= (weights= is the "
        f"backbone's ImageNet initialisation)")
