"""``refiners/irn_rw``: IRNet (Ahn et al., CVPR 2019) — the class-boundary branch and its random
walk (the refinement of IRN, CLIMS and POLE), and the displacement-field branch.

::

    refiner = wsss_kit.create("refiners", "irn_rw")
    target = refiner.training_targets(image, cams, labels)                  # (H, W) relation labels
    out = refiner.training_step({"image": images, "target": targets})
    # out: {"loss", "bg", "fg", "neg", "dp_fg", "dp_bg"}
    refiner.calibrate_mean_shift(image_batches)                             # after training (official)
    probs = refiner.refine(images, cams, labels)                            # (B, C+1, H, W)
    disp = refiner.displacement_field(images)                               # (B, 2, ⌈H/4⌉, ⌈W/4⌉)

Network (facts from jiwoon-ahn/irn ``net/resnet50_irn.py``): a frozen ResNet-50 with strides
(2, 2, 2, 1) (``layer4`` keeps the resolution by stride 1, no dilation), in eval mode and
detached; features ``x1 … x5`` after the stem + max-pool and after each of the four layers
(strides 4, 4, 8, 16, 16; 64, 256, 512, 1024, 2048 channels).

* Boundary branch: per feature a bias-free 1×1 convolution to 32 channels, GroupNorm (4 groups),
  bilinear upsampling to stride 4 (×1, ×1, ×2, ×4, ×4, cropped), ReLU; concatenated (160) and a
  1×1 convolution with bias to one logit. Boundary = sigmoid.
* Displacement branch (``fc_dp1 … fc_dp7``): bias-free 1×1 convolution + GroupNorm + ReLU per
  feature — ``x1`` → 64 (8 groups), ``x2`` → 128 (16), ``x3`` → 256 (16), ``x4`` and ``x5`` → 256
  (16) each upsampled ×2 (bilinear, ``align_corners=False``, before the ReLU) and cropped to
  ``x3``'s grid; the three stride-8 maps concatenated (768) → 256 (16), ×2, ReLU, cropped to
  ``x2``'s grid; with the two stride-4 maps (448) → 256 (16) + ReLU → a bias-free 1×1 to 2
  channels ``(dy, dx)``; then a *mean shift* that subtracts the buffer ``running_mean`` in eval
  mode only. After training the official code sets ``running_mean`` to the mean displacement over
  the training images in eval mode (:meth:`IRNRefiner.calibrate_mean_shift`).

Training (``step/train_irn.py``, ``AffinityDisplacementLoss``): the target is IRN's inter-pixel
relation label (:meth:`IRNRefiner.training_targets`, :mod:`wsss_affinity.relation_labels`),
nearest-resized to stride 4; pairs within radius 10 on the crop (PSA's cropped layout); pair
affinity = 1 − max boundary along the pair's path; pair displacement ``D(i) − D(j)`` for
``j = i + (dy, dx)`` (:func:`displacement_loss`); loss
``bg/4 + fg/4 + neg/2 + (dp_fg + dp_bg)/2``. The official optimiser runs the displacement branch
at 10× the boundary branch's learning rate (:meth:`IRNRefiner.param_groups`).

Inference (``make_sem_seg_labels``): boundary = sigmoid of the mean of the logits of the image
and of its horizontal flip (flipped back); CAMs at stride 4; walk with radius 5, β = 10,
``exp_times`` 8; scores normalised by their maximum; background threshold 0.25 (CLIMS VOC 0.2).

Out of scope: IRN's instance segmentation (centroid detection from the displacement field,
``make_ins_seg_labels``); :meth:`IRNRefiner.displacement_field` gives the field it starts from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import wsss_kit
from wsss_kit.crf import resolve_backend
from wsss_kit.multiscale import multiscale_flip
from wsss_kit.shapes import check_shape
from wsss_kit.weights import create_timm_model

from .affinity import IMAGENET_MEAN, IMAGENET_STD, affinity_labels, affinity_loss
from .random_walk import boundary_affinity, check_refiner_cams, irn_random_walk, path_indices
from .refiner_presets import IRN_PRESETS, PRESET, resolve_preset

__all__ = ["BoundaryBranch", "DisplacementBranch", "IRNBackbone", "IRNRefiner", "displacement_loss",
           "pair_displacement"]

DP_WIDTHS = (64, 128, 256, 256, 256, 256, 256)
"""Output channels of ``fc_dp1 … fc_dp7`` (the last one's hidden width; it ends in 2 channels)."""
DP_GROUPS = (8, 16, 16, 16, 16, 16, 16)
"""GroupNorm groups of ``fc_dp1 … fc_dp7``."""


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
        weights: its ImageNet initialisation (official: torchvision's ResNet-50,
            ``released:torchvision_resnet50_imagenet`` or ``timm:resnet50.tv_in1k``); a local file,
            ``released:`` or ``timm:`` spec (:func:`wsss_kit.weights.create_timm_model`); ``None`` =
            random (tests).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``layers``, ``channels`` for a tiny
            torchvision-layout ResNet in tests).
    """

    def __init__(self, name: str = "resnet50", weights: str | os.PathLike[str] | None = None,
                 **timm_kwargs: Any) -> None:
        super().__init__()
        # timm's features_only ResNet, typed Any: its feature_info, layer4 and maxpool are read by attribute
        # (timm types the model as nn.Module, whose attribute reads are Tensor | Module)
        body: Any = create_timm_model(name, weights=weights, features_only=True, **timm_kwargs)
        self.body: Any = body
        if list(body.feature_info.reduction()) != [2, 4, 8, 16, 32]:
            raise ValueError(f"IRNBackbone needs a ResNet with strides 2, 4, 8, 16, 32; {name!r} has "
                             f"{body.feature_info.reduction()}")
        _unstride(body.layer4[0])
        self.channels = tuple(body.feature_info.channels())
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.body.eval()

    def train(self, mode: bool = True) -> "IRNBackbone":
        super().train(mode)
        self.body.eval()  # frozen, BatchNorm statistics included (official)
        return self

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        """Normalised images ``(B, 3, H, W)`` → ``[x1 … x5]``, detached."""
        feats = self.body(x)
        return [self.body.maxpool(feats[0])] + list(feats[1:])


def _level(in_ch: int, out_ch: int, groups: int) -> nn.Sequential:
    if out_ch % groups:
        raise ValueError(f"GroupNorm groups must divide the width: {groups} groups for {out_ch} channels")
    return nn.Sequential(nn.Conv2d(int(in_ch), int(out_ch), 1, bias=False), nn.GroupNorm(int(groups), int(out_ch)))


def _up(x: Tensor, scale: int) -> Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False) if scale > 1 else x


class BoundaryBranch(nn.Module):
    """IRN's class-boundary branch (``fc_edge1 … fc_edge6``): five features → one logit map at stride 4.

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
        self.levels = nn.ModuleList(_level(c, width, groups) for c in in_channels)
        self.head = nn.Conv2d(5 * width, 1, 1, bias=True)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Features ``x1 … x5`` → boundary logits ``(B, 1, h, w)`` at ``x2``'s size."""
        h, w = feats[1].shape[-2:]
        outs = [F.relu(_up(level(x), scale)[..., :h, :w]) for level, scale, x in zip(self.levels, self.scales, feats)]
        return self.head(torch.cat(outs, dim=1))


class DisplacementBranch(nn.Module):
    """IRN's displacement-field branch (``fc_dp1 … fc_dp7`` + mean shift): five features → ``(dy, dx)``
    at stride 4, in feature-grid pixels.

    Args:
        in_channels: channels of ``x1 … x5``; strides: their strides (4, 4, 8, 16, 16).
        widths: output channels of ``fc_dp1 … fc_dp6`` and the hidden width of ``fc_dp7``
            (official :data:`DP_WIDTHS`); groups: their GroupNorm groups (:data:`DP_GROUPS`).

    Buffer ``running_mean`` ``(2,)``: subtracted in eval mode only (zero until calibrated).
    """

    running_mean: Tensor  # a buffer, registered in __init__

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int] = (4, 4, 8, 16, 16),
                 widths: Sequence[int] = DP_WIDTHS, groups: Sequence[int] = DP_GROUPS) -> None:
        super().__init__()
        if len(in_channels) != 5 or len(strides) != 5 or len(widths) != 7 or len(groups) != 7:
            raise ValueError(f"DisplacementBranch takes five features and seven widths/groups; got channels "
                             f"{tuple(in_channels)}, strides {tuple(strides)}, widths {tuple(widths)}, "
                             f"groups {tuple(groups)}")
        w = [int(v) for v in widths]
        self.scales = [1, 1, 1] + [int(s) // int(strides[2]) for s in strides[3:]]
        self.fuse_scale = int(strides[2]) // int(strides[1])
        self.levels = nn.ModuleList(_level(c, o, g) for c, o, g in zip(in_channels, w[:5], groups[:5]))
        self.fuse = _level(w[2] + w[3] + w[4], w[5], groups[5])
        head = _level(w[0] + w[1] + w[5], w[6], groups[6])
        self.head = nn.Sequential(head[0], head[1], nn.ReLU(), nn.Conv2d(w[6], 2, 1, bias=False))
        self.register_buffer("running_mean", torch.zeros(2))

    def field(self, feats: Sequence[Tensor]) -> Tensor:
        """Features ``x1 … x5`` → the raw field ``(B, 2, h, w)`` at ``x2``'s size (no mean shift)."""
        outs = [F.relu(_up(level(x), s)) for level, s, x in zip(self.levels, self.scales, feats)]
        h8, w8 = outs[2].shape[-2:]
        mid = torch.cat([outs[2], outs[3][..., :h8, :w8], outs[4][..., :h8, :w8]], dim=1)
        h4, w4 = outs[1].shape[-2:]
        up = F.relu(_up(self.fuse(mid), self.fuse_scale))[..., :h4, :w4]
        return self.head(torch.cat([outs[0], outs[1], up], dim=1))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """:meth:`field` minus ``running_mean`` in eval mode; unchanged in training mode."""
        out = self.field(feats)
        return out if self.training else out - self.running_mean.view(1, 2, 1, 1).to(out)


def pair_displacement(displacement: Tensor, radius: int = 10, cover_border: bool = False) -> tuple[Tensor, Tensor]:
    """Displacement differences of the pairs of :func:`~wsss_affinity.random_walk.path_indices`.

    Args:
        displacement: ``(B, 2, h, w)`` field ``D`` (channel 0 = dy, 1 = dx).

    Returns:
        ``(pair, offsets)``: ``pair`` ``(B, 2, M)`` = ``D(src) − D(dst)``; ``offsets`` float ``(2, M)``
        = ``dst − src`` as ``(dy, dx)``, the official target (``search_dst``) for pairs in one instance.
    """
    check_shape(displacement, "B 2 h w", "displacement")
    b, _, h, w = displacement.shape
    src, dst = (i.to(displacement.device) for i in path_indices(radius, h, w, cover_border))
    flat = displacement.reshape(b, 2, h * w)
    offsets = torch.stack([dst // w - src // w, dst % w - src % w]).to(displacement.dtype)
    return flat[:, :, src] - flat[:, :, dst], offsets


def displacement_loss(displacement: Tensor, mask: Tensor, radius: int = 10, cover_border: bool = False,
                      eps: float = 1e-5) -> dict[str, Tensor]:
    """IRN's displacement loss (``train_irn.py``; IRNet Eq. 7–8).

    Args:
        displacement: ``(B, 2, h, w)`` field in training mode (no mean shift).
        mask: int64 ``(B, h, w)`` relation labels on the same grid (255 = unlabelled).

    Returns:
        ``{"loss", "dp_fg", "dp_bg"}``: ``dp_fg = Σ |D(i) − D(j) − (dy, dx)|₁ · fg_pos / (2 Σ fg_pos + ε)``
        over foreground-positive pairs (both components summed), ``dp_bg = Σ |D(i) − D(j)|₁ · bg_pos /
        (2 Σ bg_pos + ε)``; ``loss = dp_fg/2 + dp_bg/2``; sums over the whole batch.
    """
    bg_pos, fg_pos, _ = affinity_labels(mask, radius, cover_border)
    pair, offsets = pair_displacement(displacement, radius, cover_border)
    if pair.shape[0] != bg_pos.shape[0] or pair.shape[-1] != bg_pos.shape[-1]:
        raise ValueError(f"displacement {tuple(displacement.shape)} and mask {tuple(mask.shape)} differ in batch "
                         f"or grid size")
    fg = ((pair - offsets).abs() * fg_pos[:, None]).sum() / (2 * fg_pos.sum() + eps)
    bg = (pair.abs() * bg_pos[:, None]).sum() / (2 * bg_pos.sum() + eps)
    return {"loss": fg / 2 + bg / 2, "dp_fg": fg.detach(), "dp_bg": bg.detach()}


class IRNRefiner(wsss_kit.Refiner, nn.Module):
    """IRNet's boundary-based random walk as a trainable refiner, with the displacement branch.

    Args:
        preset: ``official`` (IRNet's code, = ``paper``), ``clims_voc`` or ``clims_coco`` (CLIMS/POLE),
            or a dict of overrides (:data:`~wsss_affinity.refiner_presets.IRN_PRESETS`); keywords left
            at their ``<preset>`` default take the preset's value.
        backbone: timm ResNet name (``resnet50``); weights: its initialisation (:class:`IRNBackbone`);
            backbone_args: further ``timm.create_model`` keywords (tiny ResNets in tests).
        width: boundary-branch channels per level (32).
        displacement: build and train the displacement branch (official ``True``); ``False``
            trains the boundary branch alone.
        dp_widths, dp_groups: displacement-branch widths and GroupNorm groups (:data:`DP_WIDTHS`,
            :data:`DP_GROUPS`).
        train_radius: pair radius for training (10); radius: for the walk (5).
        beta, exp_times: the walk (10, 8). bg_threshold: background score (IRN 0.25, CLIMS VOC 0.2).
        sparse_walk: walk with sparse one-step products instead of the dense ``T^(2^exp_times)``
            (same result; the dense matrix of a stride-4 grid is ``(HW/16)²`` floats).
        conf_fg_threshold, conf_bg_threshold: of :meth:`training_targets` (IRN 0.30 / 0.05; CLIMS
            0.3 / 0.1). label_crf_params: their CRF (see :func:`~wsss_affinity.relation_labels.irn_relation_labels`).
            label_crf_backend: its backend (``pydensecrf``, ``torch`` on the CAMs' device, ``auto``).
        dp_lr_mult: learning-rate multiplier of the displacement branch in :meth:`param_groups` (10).
        checkpoint: a trained IRN (``res50_irn.pth``) or this refiner's state dict, loaded strictly
            (converter ``irn_resnet50``).
    """

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained IRN holds its (frozen) backbone: the ImageNet file (``weights``) is then not needed."""
    trainable = True

    def __init__(self, preset: str | Mapping[str, Any] = "official", backbone: str = "resnet50",
                 weights: str | os.PathLike[str] | None = None, width: int = 32, train_radius: int = PRESET,
                 radius: int = PRESET, beta: float = PRESET, exp_times: int = PRESET, bg_threshold: float = PRESET,
                 sparse_walk: bool = False, displacement: bool = True,
                 dp_widths: Sequence[int] = DP_WIDTHS, dp_groups: Sequence[int] = DP_GROUPS,
                 backbone_args: Mapping[str, Any] | None = None, conf_fg_threshold: float = PRESET,
                 conf_bg_threshold: float = PRESET, label_crf_params: Any = None, dp_lr_mult: float = 10.0,
                 checkpoint: str | os.PathLike[str] | None = None, label_crf_backend: str = "pydensecrf") -> None:
        nn.Module.__init__(self)
        resolve_backend(label_crf_backend)  # an unknown name fails here, listing the valid ones
        self.label_crf_backend = label_crf_backend
        cfg = resolve_preset(IRN_PRESETS, preset, "irn_rw", {
            "train_radius": train_radius, "radius": radius, "beta": beta, "exp_times": exp_times,
            "bg_threshold": bg_threshold, "conf_fg_threshold": conf_fg_threshold,
            "conf_bg_threshold": conf_bg_threshold})
        train_radius, radius, beta, exp_times = cfg["train_radius"], cfg["radius"], cfg["beta"], cfg["exp_times"]
        bg_threshold, conf_fg_threshold, conf_bg_threshold = (cfg["bg_threshold"], cfg["conf_fg_threshold"],
                                                              cfg["conf_bg_threshold"])
        self.backbone = IRNBackbone(backbone, weights, **dict(backbone_args or {}))
        self.boundary = BoundaryBranch(self.backbone.channels, width=width)
        self.displacement = DisplacementBranch(self.backbone.channels, widths=dp_widths, groups=dp_groups) \
            if displacement else None
        self.train_radius, self.radius = int(train_radius), int(radius)
        self.beta, self.exp_times, self.bg_threshold = float(beta), int(exp_times), float(bg_threshold)
        self.sparse_walk = bool(sparse_walk)
        self.conf_fg_threshold, self.conf_bg_threshold = float(conf_fg_threshold), float(conf_bg_threshold)
        self.label_crf_params, self.dp_lr_mult = label_crf_params, float(dp_lr_mult)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if checkpoint is not None:
            self.load_weights(checkpoint)

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained IRN (official ``res50_irn.pth`` or this refiner's layout), strictly."""
        from .convert_affinity import load_converted

        load_converted(self, checkpoint, "IRN checkpoint", "irn_resnet50", displacement=self.displacement is not None)

    def features(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` in [0, 1] → the detached backbone features ``[x1 … x5]``."""
        return self.backbone((images - self.mean) / self.std)

    def boundary_logits(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] → boundary logits ``(B, 1, ⌈H/4⌉, ⌈W/4⌉)``."""
        return self.boundary(self.features(images))

    def _require_displacement(self) -> DisplacementBranch:
        if self.displacement is None:
            raise RuntimeError("this IRNRefiner was built with displacement=False: it has no displacement branch")
        return self.displacement

    @torch.no_grad()
    def displacement_field(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] → displacement ``(B, 2, ⌈H/4⌉, ⌈W/4⌉)`` (``dy, dx`` in stride-4
        pixels; mean-shifted in eval mode)."""
        return self._require_displacement()(self.features(images))

    @torch.no_grad()
    def calibrate_mean_shift(self, batches: Iterable[Tensor | Mapping[str, Tensor]]) -> Tensor:
        """Set ``running_mean`` to the mean raw displacement over ``batches`` (official, after training).

        ``batches``: image batches ``(B, 3, H, W)`` in [0, 1] (or dicts with ``"image"``), as the
        official code feeds the training images; the result is the mean of the per-batch means
        over batch and pixels. Returns the new ``running_mean`` ``(2,)``.
        """
        branch = self._require_displacement()
        was_training = self.training
        self.eval()
        means = []
        for batch in batches:
            images = batch["image"] if isinstance(batch, Mapping) else batch
            images = images.to(self.mean.device)
            means.append(branch.field(self.features(images)).mean(dim=(0, 2, 3)))
        self.train(was_training)
        if not means:
            raise ValueError("calibrate_mean_shift got no batches")
        branch.running_mean.copy_(torch.stack(means).mean(dim=0))
        return branch.running_mean.clone()

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Boundary branch at ``lr``, displacement branch at ``lr * dp_lr_mult`` (official 1× / 10×)."""
        groups = [{"params": list(self.boundary.parameters()), "lr": lr, "lr_mult": 1.0}]
        if self.displacement is not None:
            groups.append({"params": list(self.displacement.parameters()), "lr": lr * self.dp_lr_mult,
                           "lr_mult": self.dp_lr_mult})
        return groups

    def training_targets(self, image: Tensor, cams: Tensor, labels: Tensor) -> Tensor:
        """IRN's relation labels (``cam_to_ir_label``): image ``(3, H, W)`` in [0, 1], CAMs ``(C, H, W)``,
        labels ``(C,)`` → int64 ``(H, W)`` (0 bg, 1..C, 255 unlabelled); see
        :func:`~wsss_affinity.relation_labels.irn_relation_labels`."""
        from .relation_labels import IRN_LABEL_CRF, irn_relation_labels

        return irn_relation_labels(image, cams, labels, self.conf_fg_threshold, self.conf_bg_threshold,
                                   crf_params=self.label_crf_params or IRN_LABEL_CRF,
                                   crf_backend=self.label_crf_backend)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["image"]`` ``(B, 3, H, W)``, ``batch["target"]`` int64 ``(B, H, W)`` relation
        labels (255 = unlabelled) → ``{"loss", "bg", "fg", "neg"}`` (+ ``"dp_fg", "dp_bg"`` with the
        displacement branch); ``loss = bg/4 + fg/4 + neg/2 (+ (dp_fg + dp_bg)/2)``."""
        images, target = batch["image"], batch["target"]
        check_shape(target, "B H W", "target", sizes={"H": images.shape[-2], "W": images.shape[-1]},
                    note="(the image size)")
        feats = self.features(images)
        boundary = torch.sigmoid(self.boundary(feats))
        mask = F.interpolate(target[:, None].float(), size=boundary.shape[-2:], mode="nearest")[:, 0].long()
        mask = mask.to(boundary.device)
        aff = boundary_affinity(boundary, self.train_radius, cover_border=False)
        out = affinity_loss(aff, mask, self.train_radius, cover_border=False)
        if self.displacement is not None:
            dp = displacement_loss(self.displacement(feats), mask, self.train_radius, cover_border=False)
            out = {**out, "loss": out["loss"] + dp["loss"], "dp_fg": dp["dp_fg"], "dp_bg": dp["dp_bg"]}
        return out

    @torch.no_grad()
    def refine(self, images: Tensor, cams: Tensor, labels: Tensor) -> Tensor:
        """CAMs ``(B, C, H, W)`` → scores normalised over classes ``(B, C + 1, H, W)``."""
        check_refiner_cams(cams, images, "irn_rw")
        h, w = images.shape[-2:]
        logits = multiscale_flip(self.boundary_logits, images, flip=True, aggregate="mean")  # image + mirror
        boundary = torch.sigmoid(logits)[:, 0]
        eh, ew = boundary.shape[-2:]
        cams = cams * labels[:, :, None, None].to(cams)
        small = F.adaptive_avg_pool2d(F.pad(cams, (0, ew * 4 - w, 0, eh * 4 - h)), (eh, ew))
        walked = irn_random_walk(small, boundary, self.beta, self.exp_times, self.radius, self.bg_threshold,
                                 sparse=self.sparse_walk)
        up = F.interpolate(walked, scale_factor=4, mode="bilinear", align_corners=False)[..., :h, :w].clamp_min(0)
        return up / up.sum(dim=1, keepdim=True).clamp_min(1e-12)
