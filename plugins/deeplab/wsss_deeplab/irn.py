"""``refiners/irn_rw``: IRNet's class-boundary branch and its random walk (Ahn et al., CVPR 2019),
the refinement of IRN, CLIMS and POLE. The displacement-field branch (instance segmentation) is
not implemented.

::

    refiner = wsss_kit.create("refiners", "irn_rw")
    out = refiner.training_step({"image": images, "target": ir_labels})   # {"loss", "bg", "fg", "neg"}
    probs = refiner.refine(images, cams, labels)                            # (B, C+1, H, W)

Network (facts from jiwoon-ahn/irn ``net/resnet50_irn.py``): a frozen ResNet-50 with strides
(2, 2, 2, 1) (``layer4`` keeps the resolution by stride 1, no dilation), in eval mode and
detached; features after the stem + max-pool and after each of the four layers (strides 4, 4,
8, 16, 16). Boundary branch: per feature a bias-free 1×1 convolution to 32 channels, GroupNorm
(4 groups), bilinear upsampling to stride 4 (×1, ×1, ×2, ×4, ×4, cropped), ReLU; concatenated
(160) and a 1×1 convolution with bias to one logit. Boundary = sigmoid.

Training (``train_irn``): the target is IRN's inter-pixel relation label (confident fg/bg regions
from CRF — CLIMS fg 0.3 / bg 0.1 —, 255 elsewhere), nearest-resized to stride 4; pairs within
radius 10 on the crop (PSA's cropped layout); pair affinity = 1 − max boundary along the pair's
path; loss ``bg/4 + fg/4 + neg/2`` (the same form as PSA's, :func:`~wsss_deeplab.affinity.affinity_loss`).

Inference (``make_sem_seg_labels``): boundary = sigmoid of the mean of the logits of the image
and of its horizontal flip (flipped back); CAMs at stride 4; walk with radius 5, β = 10,
``exp_times`` 8; scores normalised by their maximum; background threshold 0.25 (CLIMS VOC 0.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import wsss_kit

from .affinity import IMAGENET_MEAN, IMAGENET_STD, affinity_loss
from .random_walk import boundary_affinity, irn_random_walk

__all__ = ["BoundaryBranch", "IRNBackbone", "IRNRefiner"]


def _unstride(block: nn.Module) -> None:
    """Make a residual block keep its input resolution (IRN's ``layer4`` stride 1, no dilation)."""
    for name, child in list(block.named_children()):
        if isinstance(child, nn.Conv2d) and child.stride != (1, 1):
            child.stride = (1, 1)
        elif isinstance(child, (nn.AvgPool2d, nn.MaxPool2d)):
            setattr(block, name, nn.Identity())
        else:
            _unstride(child)


class IRNBackbone(nn.Module):
    """A frozen timm ResNet giving IRN's five features ``(x1 … x5)`` at strides 4, 4, 8, 16, 16.

    Args:
        name: a timm ResNet (``resnet50``, official; ``test_resnet`` in tests).
        pretrained: load timm's weights (needs them cached; ``False`` in tests).
    """

    def __init__(self, name: str = "resnet50", pretrained: bool = False) -> None:
        super().__init__()
        import timm

        self.body = timm.create_model(name, features_only=True, pretrained=pretrained)
        if list(self.body.feature_info.reduction()) != [2, 4, 8, 16, 32]:
            raise ValueError(f"IRNBackbone needs a ResNet with strides 2, 4, 8, 16, 32; {name!r} has "
                             f"{self.body.feature_info.reduction()}")
        _unstride(self.body.layer4[0])
        self.channels = tuple(self.body.feature_info.channels())
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.body.eval()

    def train(self, mode: bool = True) -> "IRNBackbone":
        super().train(mode)
        self.body.eval()  # frozen, BatchNorm statistics included (official)
        return self

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body(x)
        return [self.body.maxpool(feats[0])] + list(feats[1:])


class BoundaryBranch(nn.Module):
    """IRN's class-boundary branch: five features → one logit map at stride 4.

    Args:
        in_channels: channels of ``x1 … x5``; strides: their strides (4, 4, 8, 16, 16).
        width: channels per level (32); groups: GroupNorm groups (4).
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int] = (4, 4, 8, 16, 16),
                 width: int = 32, groups: int = 4) -> None:
        super().__init__()
        if len(in_channels) != 5 or len(strides) != 5:
            raise ValueError(f"BoundaryBranch takes five features; got channels {tuple(in_channels)}, "
                             f"strides {tuple(strides)}")
        self.scales = [int(s) // 4 for s in strides]
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(int(c), width, 1, bias=False), nn.GroupNorm(groups, width)) for c in in_channels
        )
        self.head = nn.Conv2d(5 * width, 1, 1, bias=True)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Features ``x1 … x5`` → boundary logits ``(B, 1, h, w)`` at ``x2``'s size."""
        h, w = feats[1].shape[-2:]
        outs = []
        for level, scale, x in zip(self.levels, self.scales, feats):
            y = level(x)
            if scale > 1:
                y = F.interpolate(y, scale_factor=scale, mode="bilinear", align_corners=False)
            outs.append(F.relu(y[..., :h, :w]))
        return self.head(torch.cat(outs, dim=1))


class IRNRefiner(wsss_kit.Refiner, nn.Module):
    """IRNet's boundary-based random walk as a trainable refiner.

    Args:
        backbone: timm ResNet name (``resnet50``); pretrained: load its timm weights.
        width: boundary-branch channels per level (32).
        train_radius: pair radius for training (10); radius: for the walk (5).
        beta, exp_times: the walk (10, 8). bg_threshold: background score (IRN 0.25, CLIMS VOC 0.2).
        sparse_walk: walk with sparse one-step products instead of the dense ``T^(2^exp_times)``
            (same result; the dense matrix of a stride-4 grid is ``(HW/16)²`` floats).
    """

    wsss_api_version = "1.0"
    trainable = True

    def __init__(self, backbone: str = "resnet50", pretrained: bool = False, width: int = 32,
                 train_radius: int = 10, radius: int = 5, beta: float = 10.0, exp_times: int = 8,
                 bg_threshold: float = 0.25, sparse_walk: bool = False) -> None:
        nn.Module.__init__(self)
        self.backbone = IRNBackbone(backbone, pretrained)
        self.boundary = BoundaryBranch(self.backbone.channels, width=width)
        self.train_radius, self.radius = int(train_radius), int(radius)
        self.beta, self.exp_times, self.bg_threshold = float(beta), int(exp_times), float(bg_threshold)
        self.sparse_walk = bool(sparse_walk)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def boundary_logits(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] → boundary logits ``(B, 1, ⌈H/4⌉, ⌈W/4⌉)``."""
        return self.boundary(self.backbone((images - self.mean) / self.std))

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["image"]`` ``(B, 3, H, W)``, ``batch["target"]`` int64 ``(B, H, W)`` relation
        labels (255 = unlabelled) → :func:`~wsss_deeplab.affinity.affinity_loss` terms."""
        images, target = batch["image"], batch["target"]
        if target.dim() != 3 or tuple(target.shape[-2:]) != tuple(images.shape[-2:]):
            raise ValueError(f"target must be (B, H, W) at the image size {tuple(images.shape[-2:])}, "
                             f"got {tuple(target.shape)}")
        boundary = torch.sigmoid(self.boundary_logits(images))
        mask = F.interpolate(target[:, None].float(), size=boundary.shape[-2:], mode="nearest")[:, 0].long()
        aff = boundary_affinity(boundary, self.train_radius, cover_border=False)
        return affinity_loss(aff, mask.to(aff.device), self.train_radius, cover_border=False)

    @torch.no_grad()
    def refine(self, images: Tensor, cams: Tensor, labels: Tensor) -> Tensor:
        """CAMs ``(B, C, H, W)`` → scores normalised over classes ``(B, C + 1, H, W)``."""
        if cams.dim() != 4 or tuple(cams.shape[-2:]) != tuple(images.shape[-2:]):
            raise ValueError(f"irn_rw refines CAMs (B, C, H, W) at the image size {tuple(images.shape[-2:])}, "
                             f"got {tuple(cams.shape)} (seed masks are not supported)")
        h, w = images.shape[-2:]
        logits = (self.boundary_logits(images) + self.boundary_logits(images.flip(-1)).flip(-1)) / 2
        boundary = torch.sigmoid(logits)[:, 0]
        eh, ew = boundary.shape[-2:]
        cams = cams * labels[:, :, None, None].to(cams)
        small = F.adaptive_avg_pool2d(F.pad(cams, (0, ew * 4 - w, 0, eh * 4 - h)), (eh, ew))
        walked = irn_random_walk(small, boundary, self.beta, self.exp_times, self.radius, self.bg_threshold,
                                 sparse=self.sparse_walk)
        up = F.interpolate(walked, scale_factor=4, mode="bilinear", align_corners=False)[..., :h, :w].clamp_min(0)
        return up / up.sum(dim=1, keepdim=True).clamp_min(1e-12)

