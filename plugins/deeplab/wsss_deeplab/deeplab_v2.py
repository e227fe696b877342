"""DeepLabV2 (dilated ResNet-101 + ASPP + multi-scale inputs), the retrain head of CLIMS and POLE.

Facts from kazuto1011/deeplab-pytorch (``libs/models/{resnet,deeplabv2,msc}.py``, ``main.py``),
which CLIMS's ``segmentation/deeplabv2`` copies:

* ResNet-101 (blocks 3, 4, 23, 3), output stride 8: ``res4`` and ``res5`` have stride 1 and
  dilation 2 and 4 in *every* block's 3×3 convolution (timm's ``output_stride=8`` gives the first
  block the previous dilation; it is set to 2/4 here). Caffe ResNet (``style="caffe"``): the
  stride of ``res3`` is in its first 1×1 convolution and the stem's max-pool rounds up
  (``ceil_mode``); BN eps 1e-5.
* ASPP: four parallel 3×3 convolutions 2048→K with dilation = padding = 6, 12, 18, 24, with bias,
  weights N(0, 0.01), biases 0, outputs summed.
* MSC: the network runs on the input and on copies resized (bilinear, ``align_corners=False``)
  by 0.5 and 0.75; their logits are resized to the full-input logits' size and fused by a pixel-wise
  max. Training returns ``[logits_1.0, logits_0.5, logits_0.75, logits_max]`` and the loss is
  the *sum* of cross-entropies on each, the labels resized to each logits' size (PIL nearest);
  evaluation returns ``logits_max``.
* BatchNorm frozen (``freeze_bn()``: eval mode; BN parameters are not in the optimiser); the
  convolutions train at 1×, the ASPP weights at 10× and its biases at 20× without weight decay.
* Input: Caffe-style BGR in 0..255 minus the mean (B 104.008, G 116.669, R 122.675), no std.

The pipeline's loss sees the MSC outputs like this: with ``train_output="all"`` (official) the
head returns in training a list of the four logits at 1/8 of their input's size, and the loss
node must be ``losses/deeplab_msc`` (it sums any inner loss over the list, resizing the target
with nearest-exact, i.e. PIL's nearest); with ``train_output="fused"`` it returns the fused logits
upsampled to the input size, a plain tensor any loss takes. In eval mode the head always returns the
fused logits at the input size (the :class:`wsss_kit.RetrainHead` contract).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import nn

import wsss_kit
from wsss_kit.batchnorm import freeze_batchnorm, freeze_batchnorm_params
from wsss_kit.errors import WeightsError
from wsss_kit.shapes import check_shape
from wsss_kit.weights import create_timm_model, load_checkpoint, resolve

from .convert_deeplab_v2 import convert_deeplab_v2_kazuto1011, describe_deeplab_state_dict, is_kazuto1011_layout

__all__ = ["ASPP", "CAFFE_MEAN_BGR", "DeepLabV2R101"]

CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STYLES = ("caffe", "pytorch")
INPUT_NORMS = ("caffe", "imagenet")
TRAIN_OUTPUTS = ("all", "fused")
_RESERVED = ("features_only", "out_indices", "output_stride", "pretrained", "num_classes")


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabV2: the sum of parallel dilated 3×3 convolutions."""

    def __init__(self, in_ch: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        convs = [nn.Conv2d(in_ch, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates]
        for conv in convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            if conv.bias is not None:  # always (bias=True); narrows the Optional
                nn.init.zeros_(conv.bias)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class DeepLabV2R101(wsss_kit.RetrainHead):
    """DeepLabV2-ResNet-101 with ASPP and multi-scale inputs (``heads/deeplab_v2_r101``).

    Args:
        num_classes: ``K``, classes including background.
        backbone: a timm ResNet name (``resnet101``; any bottleneck ResNet of timm's ``ResNet`` class).
        weights: backbone initialisation: a kazuto1011-layout file (the COCO initialisation
            ``deeplabv1_resnet101-coco.pth``, needs ``style="caffe"``), a torchvision/timm ImageNet
            file or ``timm:<model>.<tag>`` (need ``style="pytorch"``), or None (random). The ASPP
            keeps its random initialisation, as in the official training.
        checkpoint: a trained network loaded strictly after ``weights``: kazuto1011's
            ``DeepLabV2_ResNet101_MSC`` state dict or this head's.
        style: ``"caffe"`` (stride in the first 1×1 convolution, ``ceil_mode`` max-pool: the DeepLab
            Caffe ResNet) or ``"pytorch"`` (torchvision/timm's ResNet v1.5).
        input_norm: ``"caffe"`` (BGR 0..255 minus :data:`CAFFE_MEAN_BGR`) or ``"imagenet"`` (RGB
            mean/std); ``None`` picks the one that goes with ``style``.
        atrous_rates: ASPP dilations (6, 12, 18, 24).
        msc_scales: extra input scales fused by max (0.5, 0.75); ``()`` runs a single scale.
        train_output: ``"all"`` (official; a list for ``losses/deeplab_msc``) or ``"fused"``.
        freeze_bn: keep BatchNorm frozen (official).
        aspp_lr_mult, aspp_bias_lr_mult: learning-rate multipliers of the ASPP weights (10) and
            biases (20, without weight decay).
        backbone_kwargs: further timm keywords (``layers``, ``channels`` for tiny test networks).
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained checkpoint holds the backbone: its ImageNet file (``weights``) is then not needed."""

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet101",
        weights: str | os.PathLike[str] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        style: str = "caffe",
        input_norm: str | None = None,
        atrous_rates: Sequence[int] = (6, 12, 18, 24),
        msc_scales: Sequence[float] = (0.5, 0.75),
        train_output: str = "all",
        freeze_bn: bool = True,
        aspp_lr_mult: float = 10.0,
        aspp_bias_lr_mult: float = 20.0,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (K = foreground classes + background); "
                             f"got {num_classes!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}; got {style!r}")
        input_norm = input_norm or ("caffe" if style == "caffe" else "imagenet")
        if input_norm not in INPUT_NORMS:
            raise ValueError(
                f"input_norm must be one of {', '.join(map(repr, INPUT_NORMS))} or None; got {input_norm!r}")
        if train_output not in TRAIN_OUTPUTS:
            raise ValueError(f"train_output must be one of {', '.join(map(repr, TRAIN_OUTPUTS))}; got {train_output!r}")
        rates = tuple(int(r) for r in atrous_rates)
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"atrous_rates must be positive integers; got {tuple(atrous_rates)}")
        scales = tuple(float(s) for s in msc_scales)
        if any(not 0 < s for s in scales):
            raise ValueError(f"msc_scales must be positive; got {scales}")
        if not (aspp_lr_mult > 0 and aspp_bias_lr_mult > 0):
            raise ValueError(f"aspp_lr_mult and aspp_bias_lr_mult must be positive; got {aspp_lr_mult!r}, "
                             f"{aspp_bias_lr_mult!r}")
        backbone_kwargs = dict(backbone_kwargs or {})
        reserved = sorted(set(backbone_kwargs) & set(_RESERVED))
        if reserved:
            raise ValueError(f"backbone_kwargs must not set {', '.join(reserved)}: the head builds a features-only, "
                             f"output-stride-8 backbone itself")
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.style = style
        self.input_norm = input_norm
        self.msc_scales = scales
        self.train_output = train_output
        self.freeze_bn = bool(freeze_bn)
        self.aspp_lr_mult = float(aspp_lr_mult)
        self.aspp_bias_lr_mult = float(aspp_bias_lr_mult)

        self.backbone = self._build_backbone(backbone, weights, backbone_kwargs)
        # timm types its models as nn.Module; a features_only one carries a FeatureInfo
        info = cast(FeatureInfo, self.backbone.feature_info)
        self.aspp = ASPP(int(info.channels()[-1]), num_classes, rates)
        if input_norm == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.ones(1, 3, 1, 1), persistent=False)
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if checkpoint is not None:
            self.load_weights(checkpoint)
        if self.freeze_bn:
            freeze_batchnorm_params(self.backbone)
        self.train(self.training)

    # ------------------------------------------------------------------ construction
    def _build_backbone(self, name: str, weights: Any, kwargs: dict[str, Any]) -> nn.Module:
        purpose = f"DeepLabV2 backbone weights ({name})"
        resolved = resolve(weights, purpose=purpose) if weights is not None else None
        tag = resolved if isinstance(resolved, str) else None
        if tag is not None and self.style == "caffe":
            raise WeightsError(f"{purpose}: {tag!r} are torchvision/timm ImageNet weights (stride in the 3×3 "
                               f"convolution) but the head was built with style='caffe'; pass style='pytorch'")
        kwargs.setdefault("zero_init_last", False)  # frozen BN must not start with zeroed residual branches
        try:
            model = create_timm_model(name, weights=tag, features_only=True, out_indices=(-1,), output_stride=8,
                                      **kwargs)
        except (TypeError, RuntimeError) as exc:
            raise ValueError(f"backbone {name!r} cannot be built as an output-stride-8 feature extractor with "
                             f"{kwargs}: {type(exc).__name__}: {exc}; use a timm ResNet such as 'resnet101'") from exc
        # timm ResNet stages, read and patched by attribute (Any: nn.Module types attribute reads as Tensor | Module)
        stages: list[Any] = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
        if any(s is None for s in stages) or not all(hasattr(b, "conv3") for s in stages for b in s):
            raise ValueError(f"backbone {name!r} is not a bottleneck ResNet with layer1..layer4 (DeepLabV2 needs one)")
        for stage, rate in ((stages[2], 2), (stages[3], 4)):
            for block in stage:
                block.conv2.dilation, block.conv2.padding = (rate, rate), (rate, rate)
        if self.style == "caffe":
            stem_pool: Any = model.maxpool  # timm ResNet's nn.MaxPool2d
            stem_pool.ceil_mode = True
            first = stages[1][0]
            first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
        if resolved is not None and not isinstance(resolved, str):  # a file (a str is a hub tag, loaded above)
            self._load_backbone_file(model, resolved, purpose)
        return model

    def _load_backbone_file(self, model: nn.Module, path: os.PathLike[str], purpose: str) -> None:
        own = model.state_dict()

        def convert(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
            if is_kazuto1011_layout(state):
                if self.style != "caffe":
                    raise WeightsError(f"{source} is {describe_deeplab_state_dict(state)}: a Caffe ResNet (stride "
                                       f"in the 1×1 convolution); build the head with style='caffe'")
                converted = convert_deeplab_v2_kazuto1011(state, source=source)
                return {k[len("backbone."):]: v for k, v in converted.items() if k.startswith("backbone.")}
            if "conv1.weight" in state and any(k.startswith("layer1.") for k in state):
                if self.style == "caffe":
                    raise WeightsError(f"{source} is {describe_deeplab_state_dict(state)} (stride in the 3×3 "
                                       f"convolution) but the head was built with style='caffe'; pass style='pytorch'")
                return {k: v for k, v in state.items() if k in own}  # a features-only net has no fc
            raise WeightsError(f"{source} is not a ResNet backbone: it looks like {describe_deeplab_state_dict(state)}")

        load_checkpoint(model, path, converter=convert, purpose=purpose)

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained network (kazuto1011's ``DeepLabV2_ResNet101_MSC`` or this head's), strictly."""
        def convert(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
            if is_kazuto1011_layout(state) and self.style != "caffe":
                raise WeightsError(f"{source} is a kazuto1011 (Caffe ResNet) network; build the head with "
                                   f"style='caffe'")
            converted = convert_deeplab_v2_kazuto1011(state, num_classes=self.num_classes, source=source)
            if not any(k.startswith("aspp.") for k in converted):
                raise WeightsError(f"{source} is {describe_deeplab_state_dict(state)} without an ASPP: a backbone "
                                   f"initialisation goes in weights=, a trained DeepLabV2 in checkpoint=")
            return converted

        load_checkpoint(self, checkpoint, converter=convert, purpose="DeepLabV2 checkpoint",
                        hint="a pretrained backbone tag goes in weights=")

    # ------------------------------------------------------------------ modes and groups
    def train(self, mode: bool = True) -> "DeepLabV2R101":
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone at ``lr``, ASPP weights at ``lr * aspp_lr_mult``, ASPP biases at
        ``lr * aspp_bias_lr_mult`` with ``weight_decay`` 0 (frozen parameters left out)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        weights = [c.weight for c in self.aspp.convs if c.weight.requires_grad]
        biases = [c.bias for c in self.aspp.convs if c.bias.requires_grad]
        return [
            {"params": backbone, "lr": lr, "lr_mult": 1.0},
            {"params": weights, "lr": lr * self.aspp_lr_mult, "lr_mult": self.aspp_lr_mult},
            {"params": biases, "lr": lr * self.aspp_bias_lr_mult, "lr_mult": self.aspp_bias_lr_mult,
             "weight_decay": 0.0},
        ]

    # ------------------------------------------------------------------ forward
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] RGB → the backbone's input (Caffe BGR 0..255 minus mean, or ImageNet mean/std)."""
        if self.input_norm == "caffe":
            return images.flip(1) * 255.0 - self.mean
        return (images - self.mean) / self.std

    def single_scale(self, x: torch.Tensor) -> torch.Tensor:
        """ASPP logits ``(B, K, h/8, w/8)`` of an already normalised input."""
        return self.aspp(self.backbone(x)[-1])

    def multi_scale(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[logits at 1.0, logits at each msc scale..., pixel-wise max]`` at 1/8 of each input, the
        max at the full input's logits size (kazuto1011's ``MSC.forward``); ``[logits]`` without
        ``msc_scales``."""
        x = self.normalize(images)
        logits = self.single_scale(x)
        pyramid = []
        for s in self.msc_scales:
            size = (max(1, int(x.shape[-2] * s)), max(1, int(x.shape[-1] * s)))
            pyramid.append(self.single_scale(F.interpolate(x, size=size, mode="bilinear", align_corners=False)))
        if not pyramid:
            return [logits]
        resized = [F.interpolate(p, size=logits.shape[-2:], mode="bilinear", align_corners=False) for p in pyramid]
        fused = torch.stack([logits, *resized]).amax(dim=0)
        return [logits, *pyramid, fused]

    # The override widens RetrainHead's return: training with train_output="all" gives the MSC list
    # that losses/deeplab_msc reads; in eval mode (the interface's contract) it is the logits tensor.
    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        """Eval (and ``train_output="fused"``): fused logits ``(B, K, H, W)`` at the input size.
        Training with ``train_output="all"``: the list of :meth:`multi_scale`, for ``losses/deeplab_msc``."""
        check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")
        outputs = self.multi_scale(images)
        if self.training and self.train_output == "all":
            return outputs
        return F.interpolate(outputs[-1], size=images.shape[-2:], mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, backbone={self.backbone_name!r}, style={self.style!r}, "
                f"input_norm={self.input_norm!r}, msc_scales={self.msc_scales}, train_output={self.train_output!r}")
