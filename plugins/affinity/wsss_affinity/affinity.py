"""``refiners/psa_rw``: PSA's AffinityNet (Ahn & Kwak, CVPR 2018) and its random walk, as used by
MCTformer.

::

    refiner = wsss_kit.create("refiners", "psa_rw")
    out = refiner.training_step({"image": images, "target": seeds})   # {"loss", "bg", "fg", "neg"}
    probs = refiner.refine(images, cams, labels)                        # (B, C+1, H, W)

Network (facts from jiwoon-ahn/psa ``network/resnet38_aff.py``): a :class:`WideResNet38` trunk;
three feature maps at stride 8 — the activated (BN-ReLU) outputs of stage ``b4`` and ``b5`` (the
pre-activation of the next stage) and the trunk output (``bn7``) — each through a bias-free 1×1
convolution (to 64, 128, 256 channels) and ELU, concatenated (448) and through a bias-free 1×1
convolution + ELU (448): the affinity embedding. Init: Kaiming normal, the last one Xavier
uniform with gain 4. The stem and stage ``b2`` are frozen.

Training labels (PSA Sec. 3.2): the ``target`` is a label map with confident regions, 255
elsewhere (PSA/MCTformer build it from two dense-CRF maps with background ``(1 − max)^α``,
α = 1 and 12 for MCTformer — :func:`~wsss_affinity.relation_labels.confident_regions`); it is
nearest-resized to the feature grid.
Pairs within radius 5 with both ends labelled are positive (same label; background and
foreground pairs kept apart) or negative. Loss (PSA Eq. 4–6, official weights):
``bg/4 + fg/4 + neg/2``, each term averaged over its own pairs.

Inference (``infer_aff``): CAMs average-pooled by 8, a background channel (a constant 0.39 for
MCTformer, or ``(1 − max)^α``), walk with ``β = 8``, ``log_t = 6`` (:func:`psa_random_walk`),
bilinear back to the image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import wsss_kit
from wsss_deeplab.convert_wr38 import convert_resnet38_imagenet
from wsss_deeplab.wide_resnet38 import WideResNet38
from wsss_kit import IGNORE_INDEX
from wsss_kit.batchnorm import freeze_batchnorm, freeze_batchnorm_params
from wsss_kit.crf import resolve_backend
from wsss_kit.shapes import check_shape
from wsss_kit.weights import load_checkpoint

from .random_walk import check_refiner_cams, feature_affinity, path_indices, psa_random_walk
from .refiner_presets import PRESET, PSA_PRESETS, resolve_preset

__all__ = ["AffinityNet", "PSARefiner", "affinity_labels", "affinity_loss"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def affinity_labels(mask: Tensor, radius: int = 5, cover_border: bool = False,
                    ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor, Tensor]:
    """Pair labels for the pairs of :func:`~wsss_affinity.random_walk.path_indices`.

    Args:
        mask: int64 ``(B, h, w)`` at the feature resolution; ``ignore_index`` = unlabelled.
        cover_border: ``False`` (default) is PSA's training layout.

    Returns:
        ``(bg_pos, fg_pos, neg)``, float ``(B, M)`` indicators: both background; both the same
        foreground class; different labels. Pairs touching an ignored pixel are in none.
    """
    if mask.dim() != 3 or mask.is_floating_point():
        raise ValueError(f"mask must be an integer (B, h, w) tensor, got {mask.dtype} {tuple(mask.shape)}")
    b, h, w = mask.shape
    src, dst = path_indices(radius, h, w, cover_border)
    flat = mask.reshape(b, -1)
    a, c = flat[:, src.to(mask.device)], flat[:, dst.to(mask.device)]
    valid = (a != ignore_index) & (c != ignore_index)
    same = valid & (a == c)
    return ((same & (a == 0)).float(), (same & (a != 0)).float(), (valid & (a != c)).float())


def affinity_loss(pair_affinity: Tensor, mask: Tensor, radius: int = 5, cover_border: bool = False,
                  weights: Sequence[float] = (0.25, 0.25, 0.5), eps: float = 1e-5) -> dict[str, Tensor]:
    """PSA's affinity loss (Eq. 4–6).

    Args:
        pair_affinity: ``(B, M)`` in (0, 1] from :func:`~wsss_affinity.random_walk.feature_affinity`.
        mask: int64 ``(B, h, w)`` confident-region labels on the same grid.
        weights: of the background-positive, foreground-positive and negative terms (official
            1/4, 1/4, 1/2).

    Returns:
        ``{"loss", "bg", "fg", "neg"}``: ``bg = Σ −log(a + ε)·bg_pos / (Σ bg_pos + ε)``, the same
        for ``fg``; ``neg = Σ −log(1 + ε − a)·neg / (Σ neg + ε)``; sums over the whole batch.
    """
    bg_pos, fg_pos, neg = affinity_labels(mask, radius, cover_border)
    if pair_affinity.shape != bg_pos.shape:
        raise ValueError(f"pair_affinity must be {tuple(bg_pos.shape)} for the mask, got {tuple(pair_affinity.shape)}")
    pos_log = -torch.log(pair_affinity + eps)
    bg = (pos_log * bg_pos).sum() / (bg_pos.sum() + eps)
    fg = (pos_log * fg_pos).sum() / (fg_pos.sum() + eps)
    ng = (-torch.log(1 + eps - pair_affinity) * neg).sum() / (neg.sum() + eps)
    wb, wf, wn = weights
    return {"loss": wb * bg + wf * fg + wn * ng, "bg": bg.detach(), "fg": fg.detach(), "neg": ng.detach()}


class AffinityNet(nn.Module):
    """WR38 trunk → 448-d (by default) affinity embeddings at stride 8.

    Args:
        embed_widths: channels of the three projections (b4, b5, trunk output); official (64, 128, 256).
        embed_dim: channels of the final embedding; official 448 (= their sum).
        weights: ResNet38 ImageNet weights for the trunk (a path or ``"released:resnet38_imagenet"``,
            PSA layout or ``backbone.*``), loaded strictly; ``None`` = random initialisation.
        freeze_bn: keep every trunk BatchNorm in eval mode with frozen affine parameters (official:
            ``resnet38d.Net.train``); ``False`` trains them (a randomly initialised trunk needs it).
        freeze_stem: freeze the stem and stage ``b2`` (official ``not_training``).
        **trunk: :class:`WideResNet38` settings (tiny widths in tests).
    """

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self, embed_widths: Sequence[int] = (64, 128, 256), embed_dim: int = 448,
                 weights: str | os.PathLike[str] | None = None, freeze_bn: bool = True,
                 freeze_stem: bool = True, **trunk: Any) -> None:
        super().__init__()
        self.trunk = WideResNet38(**trunk)
        widths = [self.trunk.first_block(k).conv2.out_channels for k in (2, 3)] + [self.trunk.out_channels]
        if len(embed_widths) != 3:
            raise ValueError(f"embed_widths needs three channel counts (b4, b5, output), got {tuple(embed_widths)}")
        proj = [nn.Conv2d(i, int(o), 1, bias=False) for i, o in zip(widths, embed_widths)]
        self.proj = nn.ModuleList(proj)
        self.embed = nn.Conv2d(sum(int(o) for o in embed_widths), int(embed_dim), 1, bias=False)
        for conv in proj:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.embed.weight, gain=4)
        self.freeze_bn, self.freeze_stem = bool(freeze_bn), bool(freeze_stem)
        if self.freeze_stem:
            for p in list(self.trunk.stem.parameters()) + list(self.trunk.stages[0].parameters()):
                p.requires_grad_(False)
        if self.freeze_bn:
            freeze_batchnorm_params(self.trunk)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            self.load_backbone(weights)

    def load_backbone(self, weights: str | os.PathLike[str]) -> None:
        """Load ResNet38 ImageNet weights (PSA layout or ``backbone.*``) into the trunk, strictly."""
        def convert(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
            converted = convert_resnet38_imagenet(state, source=source)
            own = {k: v for k, v in self.state_dict().items() if not k.startswith("trunk.")}
            return {"trunk." + k[len("backbone."):]: v for k, v in converted.items()} | own

        load_checkpoint(self, weights, converter=convert, purpose="ResNet38 trunk weights",
                        hint="timm and open_clip have no ResNet38; pass a path or 'released:resnet38_imagenet'")

    def train(self, mode: bool = True) -> "AffinityNet":
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.trunk)
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """PSA's ``get_parameter_groups`` with ``train_aff``'s rates: the trunk at ``lr``, the new
        projections (``f8_*``, ``f9``) at ``10 · lr``; frozen parameters are left out. (The official
        biases' 2× / 20× groups are empty: every convolution here is bias-free.)"""
        trunk = [p for p in self.trunk.parameters() if p.requires_grad]
        new = [p for p in list(self.proj.parameters()) + list(self.embed.parameters()) if p.requires_grad]
        return [{"params": trunk, "lr": lr, "lr_mult": 1.0}, {"params": new, "lr": 10 * lr, "lr_mult": 10.0}]

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] → embeddings ``(B, embed_dim, ⌈H/8⌉, ⌈W/8⌉)``."""
        x = self.trunk.stem((images - self.mean) / self.std)
        taps = []
        stages = self.trunk.stages
        for k, stage in enumerate(stages):
            x = stage(x)
            if k in (2, 3):  # activated b4 / b5 output = the next stage's pre-activation
                taps.append(F.relu(self.trunk.first_block(k + 1).norm1(x)))
        taps.append(F.relu(self.trunk.norm_out(x)))
        feats = torch.cat([F.elu(p(t)) for p, t in zip(self.proj, taps)], dim=1)
        return F.elu(self.embed(feats))


class PSARefiner(wsss_kit.Refiner, nn.Module):
    """PSA / MCTformer random-walk refiner with a trainable :class:`AffinityNet`.

    Args:
        preset: ``official`` (MCTformer's PSA step, = ``paper``) or ``psa`` (PSA's own code), or a dict
            of overrides (:data:`~wsss_affinity.refiner_presets.PSA_PRESETS`); keywords left at their
            ``<preset>`` default take the preset's value.
        radius: pair radius (5). beta, log_t: walk (MCTformer 8, 6).
        bg_threshold: constant background score for the walk (MCTformer 0.39); ``alpha``
            instead gives ``(1 − max)^alpha`` (PSA's ``infer_aff``).
        train_cover_border: pair layout for training (``False`` = PSA's cropped layout).
        cover_border: pair layout for the walk: ``True`` (default) pairs every pixel within the
            radius; ``False`` reproduces PSA's ``infer_aff``, whose cropped layout leaves out pairs
            inside the bottom/left/right border band (a quirk of the official code).
        sparse_walk: walk with sparse one-step products instead of the dense ``T^(2^log_t)``
            (same result; much less memory and CPU time on large grids).
        alpha_low, alpha_high, label_crf_params: of :meth:`training_targets` (MCTformer 1 / 12,
            PSA 4 / 32; the core CRF set ``"psa"``: (3, 3) / (80, 13, 10)). label_crf_backend: their
            dense-CRF backend (``pydensecrf``, ``torch`` on the CAMs' device, ``auto``).
        checkpoint: a trained AffinityNet (PSA's ``res38_aff.pth`` or this refiner's state dict),
            loaded strictly after the network is built (converter ``psa_affinity_net``).
        **network: :class:`AffinityNet` settings.
    """

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained AffinityNet holds its trunk: the ResNet38 ImageNet file (``weights``) is then not needed."""
    trainable = True

    def __init__(self, preset: str | Mapping[str, Any] = "official", radius: int = 5, beta: float = PRESET,
                 log_t: int = PRESET, bg_threshold: float | None = PRESET, alpha: float | None = PRESET,
                 train_cover_border: bool = False, cover_border: bool = PRESET, sparse_walk: bool = False,
                 alpha_low: float = PRESET, alpha_high: float = PRESET, label_crf_params: Any = "psa",
                 checkpoint: str | os.PathLike[str] | None = None, label_crf_backend: str = "pydensecrf",
                 **network: Any) -> None:
        nn.Module.__init__(self)
        resolve_backend(label_crf_backend)  # an unknown name fails here, listing the valid ones
        self.label_crf_backend = label_crf_backend
        cfg = resolve_preset(PSA_PRESETS, preset, "psa_rw", {
            "beta": beta, "log_t": log_t, "bg_threshold": bg_threshold, "alpha": alpha, "cover_border": cover_border,
            "alpha_low": alpha_low, "alpha_high": alpha_high})
        if cfg["bg_threshold"] is None and cfg["alpha"] is None:
            raise ValueError("psa_rw needs a background for the walk: bg_threshold (a constant score, MCTformer "
                             "0.39) or alpha (the (1 - max)^alpha of PSA's infer_aff, 16)")
        self.net = AffinityNet(**network)
        self.alpha_low, self.alpha_high = float(cfg["alpha_low"]), float(cfg["alpha_high"])
        self.label_crf_params = label_crf_params
        self.radius, self.beta, self.log_t = int(radius), float(cfg["beta"]), int(cfg["log_t"])
        self.bg_threshold, self.alpha = cfg["bg_threshold"], cfg["alpha"]
        self.train_cover_border, self.cover_border = bool(train_cover_border), bool(cfg["cover_border"])
        self.sparse_walk = bool(sparse_walk)
        if checkpoint is not None:
            self.load_weights(checkpoint)

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained AffinityNet (PSA's ``resnet38_aff`` or this refiner's layout) into ``net``, strictly."""
        from .convert_affinity import load_converted

        load_converted(self.net, checkpoint, "AffinityNet checkpoint", "psa_affinity_net")

    def training_targets(self, image: Tensor, cams: Tensor, labels: Tensor) -> Tensor:
        """PSA's confident regions from two CRFs: image ``(3, H, W)`` in [0, 1], CAMs ``(C, H, W)``,
        labels ``(C,)`` → int64 ``(H, W)`` (0 bg, 1..C, 255 unlabelled); see
        :func:`~wsss_affinity.relation_labels.psa_relation_labels`."""
        from .relation_labels import psa_relation_labels

        return psa_relation_labels(image, cams, labels, self.alpha_low, self.alpha_high, self.label_crf_params,
                                   crf_backend=self.label_crf_backend)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """:meth:`AffinityNet.param_groups` (the engine uses it when it builds the optimiser)."""
        return self.net.param_groups(lr)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``batch["image"]`` ``(B, 3, H, W)``, ``batch["target"]`` int64 ``(B, H, W)`` confident
        regions (255 elsewhere) → :func:`affinity_loss` terms."""
        images, target = batch["image"], batch["target"]
        check_shape(target, "B H W", "target", sizes={"H": images.shape[-2], "W": images.shape[-1]},
                    note="(the image size)")
        emb = self.net(images)
        mask = F.interpolate(target[:, None].float(), size=emb.shape[-2:], mode="nearest")[:, 0].long()
        aff = feature_affinity(emb, self.radius, self.train_cover_border)
        return affinity_loss(aff, mask.to(emb.device), self.radius, self.train_cover_border)

    @torch.no_grad()
    def refine(self, images: Tensor, cams: Tensor, labels: Tensor) -> Tensor:
        """CAMs ``(B, C, H, W)`` → walked scores normalised over classes ``(B, C + 1, H, W)``."""
        check_refiner_cams(cams, images, "psa_rw")
        h, w = images.shape[-2:]
        ph, pw = math.ceil(h / 8) * 8, math.ceil(w / 8) * 8
        pad = (0, pw - w, 0, ph - h)
        emb = self.net(F.pad(images, pad))
        cams = cams * labels[:, :, None, None].to(cams)
        background = None
        if self.alpha is not None:  # at the image size, zero in the padding, then pooled (infer_aff)
            full = (1 - cams.amax(dim=1, keepdim=True)).clamp_min(0).pow(self.alpha)
            background = F.avg_pool2d(F.pad(full, pad), 8, 8)[..., : emb.shape[-2], : emb.shape[-1]]
        small = F.avg_pool2d(F.pad(cams, pad), 8, 8)[..., : emb.shape[-2], : emb.shape[-1]]
        walked = psa_random_walk(small, emb, self.beta, self.log_t, self.radius, alpha=self.alpha,
                                 bg_threshold=self.bg_threshold, cover_border=self.cover_border,
                                 background=background, sparse=self.sparse_walk)
        up = F.interpolate(walked, size=(ph, pw), mode="bilinear", align_corners=False)[..., :h, :w]
        up = up.clamp_min(0)
        return up / up.sum(dim=1, keepdim=True).clamp_min(1e-12)
