"""MCTformer V1 and V2: a ViT with one class token per class, whose attention gives the CAMs.

The backbone is any timm ViT with standard blocks (DeiT-S in the papers). Its single CLS token
becomes ``C`` class tokens (CLS token and its position embedding replicated when starting from a
classification checkpoint). Class logits are the channel means of the final class tokens, without
the final norm; V2 adds a 3×3 convolution over the patch tokens with global average pooling, and
each logit set gets a multilabel soft margin loss.

CAMs (official settings of the V1/V2 code, commit 96065977 of xulianuwa/MCTformer):

* class-to-patch attention of the last ``cam_layers`` (3) blocks, averaged over heads, summed;
* V2 ``fused``: multiplied by the rectified patch-token CAM (the 3×3 convolution's output);
* patch-level refinement: the patch-to-patch attention summed over all blocks, applied as a matrix
  product to the maps;
* resized to the image, masked by the labels, summed with the mirrored pass, min–max normalised per
  class (eps 1e-8).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Mapping, Sequence, cast

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

import wsss_kit
from wsss_kit.cam_ops import multiscale_cams
from wsss_kit.errors import WeightsError
from wsss_kit.input_space import check_input_space, normalize_input
from wsss_kit.weights import create_timm_model, load_checkpoint

from .checks import check_backbone_name, check_images
from .convert_mctformer import convert_deit_classifier, convert_mctformer
from .losses import multilabel_soft_margin_loss
from .resnet_cam import IMAGENET_MEAN, IMAGENET_STD
from .vit_tokens import (
    block_adding_attention,
    block_first_rows,
    block_with_attention,
    check_block,
    resize_patch_pos_embed,
)

ATTENTION_TYPES = ("fused", "patchcam", "attention")
"""V2 CAM sources: attention × patch CAM (official), the patch CAM alone, the attention alone."""


class MCTformer(wsss_kit.CAMGenerator):
    """Multi-class token transformer (MCTformer V1 or V2).

    Args:
        num_classes: ``C``, foreground classes, one class token each.
        version: 1 (class tokens only) or 2 (plus the patch-token convolution classifier).
        backbone: a timm ViT name (``deit_small_patch16_224`` as in the papers; ``test_vit`` or
            ``deit_tiny_patch16_224`` for tests). The ViT's own head and final norm are unused.
        backbone_kwargs: extra keywords for ``timm.create_model`` that reshape the ViT, e.g.
            ``{patch_size: 8, depth: 6}`` for small images.
        weights: ImageNet initialisation of the ViT (local file, ``released:deit_small_imagenet``
            or a ``timm:`` tag); the CLS token and its position embedding are replicated ``C`` times
            and the position grid resized to ``img_size``. ``None``: random (trunc-normal) init.
        checkpoint: a trained MCTformer checkpoint (this plugin's layout or the official code's,
            e.g. ``released:mctformer_v2_voc``), loaded strictly after construction.
        img_size: training resolution that sets the position-embedding grid (224).
        drop_rate: token dropout after adding position embeddings (0).
        drop_path_rate: stochastic depth (0.1, as the official training).
        cam_layers: how many last blocks' class-to-patch attention form the CAM (3).
        patch_refine: refine with the patch-to-patch attention of all blocks (True).
        attention_type: V2 only: ``fused`` (default), ``patchcam`` or ``attention``.
        scales: default CAM inference scales (the official maps use ``(1.0,)``).
        flip: default CAM inference flip (True).
        input_space: ``"unit"`` (default): images are RGB in [0, 1] and ImageNet normalisation
            happens inside; ``"normalized"``: images are already ``(x − mean) / std`` with ImageNet's
            mean/std (:attr:`mean`, :attr:`std`), as the official MCTformer data loader feeds them,
            and go to the patch embedding as they are. For your own tensors; wsss_kit's datasets
            yield [0, 1] images.

    Inputs are images ``(B, 3, H, W)`` in ``input_space``, any size of at least one patch.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("weights",)
    """A trained checkpoint holds the whole ViT: its ImageNet file (``weights``) is then not needed."""

    def __init__(
        self,
        num_classes: int,
        version: int = 2,
        backbone: str = "deit_small_patch16_224",
        backbone_kwargs: Mapping[str, Any] | None = None,
        weights: str | os.PathLike[str] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        img_size: int = 224,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        cam_layers: int = 3,
        patch_refine: bool = True,
        attention_type: str = "fused",
        scales: Sequence[float] = (1.0,),
        flip: bool = True,
        input_space: str = "unit",
    ) -> None:
        super().__init__()
        self.input_space = check_input_space(input_space)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (foreground classes); got {num_classes!r}")
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2; got {version!r}")
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {', '.join(ATTENTION_TYPES)}; got {attention_type!r}")
        if version == 1 and attention_type != "fused":
            raise ValueError("attention_type applies to MCTformer V2 only (V1 has no patch CAM); leave it at 'fused'")
        scales = tuple(float(s) for s in scales)
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers; got {scales}")
        check_backbone_name(backbone)

        self.num_classes = num_classes
        self.version = version
        self.backbone_name = backbone
        self.attention_type = attention_type
        self.patch_refine = bool(patch_refine)
        self.scales = scales
        self.flip = bool(flip)

        vit = self._build_vit(backbone, dict(backbone_kwargs or {}), weights, img_size, drop_rate, drop_path_rate)
        depth = len(vit.blocks)
        if isinstance(cam_layers, bool) or not isinstance(cam_layers, int) or not 1 <= cam_layers <= depth:
            raise ValueError(f"cam_layers must be an int in 1..{depth} (the backbone's depth); got {cam_layers!r}")
        self.cam_layers = cam_layers
        self.embed_dim = int(vit.embed_dim)
        self.patch_embed = vit.patch_embed
        self.patch_size = tuple(int(p) for p in self.patch_embed.patch_size)
        grid_h, grid_w = self.patch_embed.grid_size
        self.base_grid = (int(grid_h), int(grid_w))
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre
        self.blocks = vit.blocks

        # one class token per class: the CLS token (and its position) replicated, as the official
        # fine-tuning does; from scratch both get the official trunc-normal(0.02) initialisation
        if vit.cls_token is None or vit.pos_embed is None:
            raise ValueError(f"backbone {backbone!r} has no class token or no learned position embedding; "
                             f"MCTformer replicates both per class")
        self.cls_token = nn.Parameter(vit.cls_token.detach().repeat(1, num_classes, 1))
        self.pos_embed = nn.Parameter(torch.cat(
            [vit.pos_embed.detach()[:, :1].repeat(1, num_classes, 1), vit.pos_embed.detach()[:, 1:]], dim=1))
        if weights is None:
            trunc_normal_(self.cls_token, std=0.02)
            trunc_normal_(self.pos_embed, std=0.02)
        if version == 2:
            self.head = nn.Conv2d(self.embed_dim, num_classes, kernel_size=3, padding=1)
            trunc_normal_(self.head.weight, std=0.02)
            if self.head.bias is not None:  # always (Conv2d's default bias=True); narrows the Optional
                nn.init.zeros_(self.head.bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if checkpoint is not None:
            self.load_weights(checkpoint)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _build_vit(backbone: str, extra: dict[str, Any], weights: Any, img_size: int, drop_rate: float,
                   drop_path_rate: float) -> VisionTransformer:
        reserved = {"num_classes", "img_size", "drop_rate", "drop_path_rate", "pretrained"} & set(extra)
        if reserved:
            raise ValueError(f"backbone_kwargs must not set {sorted(reserved)}: they are MCTformer's own "
                             f"arguments (pass them directly)")
        kwargs = dict(extra, num_classes=0, img_size=img_size, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        is_tag = isinstance(weights, str) and weights.startswith("timm:")
        try:
            vit = create_timm_model(
                backbone, weights=weights,
                converter=None if weights is None or is_tag else convert_deit_classifier(img_size),
                **kwargs)
        except TypeError as exc:
            raise ValueError(f"backbone {backbone!r} is not a timm VisionTransformer: {exc}") from exc
        if not isinstance(vit, VisionTransformer):
            raise ValueError(f"backbone {backbone!r} is a {type(vit).__name__}, not a timm VisionTransformer; "
                             f"MCTformer needs a ViT such as 'deit_small_patch16_224'")
        if vit.cls_token is None or vit.num_prefix_tokens != 1 or getattr(vit, "no_embed_class", False) \
                or vit.pos_embed is None:
            raise ValueError(f"backbone {backbone!r} must have exactly one CLS token with a learned position "
                             f"embedding (no register/distillation tokens), as DeiT/ViT do")
        for i, block in enumerate(vit.blocks):
            check_block(block, f"backbone {backbone!r} block {i}")
            # forward passes that need no attention maps (training, and CAM blocks whose maps are
            # not read) go through timm's fused SDPA path, whatever TIMM_FUSED_ATTN says
            cast(Any, block.attn).fused_attn = True
        return vit

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load a trained MCTformer checkpoint (this layout or the official one), strictly."""
        load_checkpoint(self, checkpoint, converter=self._convert_checkpoint,
                        purpose=f"MCTformer V{self.version} checkpoint")

    def _convert_checkpoint(self, state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Official or this layout → this layout, refusing another input size or width by name."""
        converted = convert_mctformer(state, version=self.version, num_classes=self.num_classes, source=source)
        stored, own = tuple(converted["pos_embed"].shape), tuple(self.pos_embed.shape)
        if stored != own:
            patches = stored[1] - self.num_classes
            side = int(round(patches ** 0.5))
            raise WeightsError(
                f"{source}: pos_embed is {stored} ({patches} patch positions, trained at "
                f"about {side * self.patch_size[0]} px with width {stored[-1]}) but the model's is {own}; build "
                f"it with the checkpoint's backbone and img_size={side * self.patch_size[0]}")
        return converted

    # ------------------------------------------------------------------ tokens
    def _pos_embed_for(self, height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
        # The official code keeps the stored embeddings only when the grid matches AND the image is
        # square (it compares pixel sizes); any other input goes through the +0.1 bicubic resize.
        if grid == self.base_grid and height == width:
            return self.pos_embed
        c = self.num_classes
        patches = resize_patch_pos_embed(self.pos_embed[:, c:], self.base_grid, grid)
        return torch.cat([self.pos_embed[:, :c], patches], dim=1)

    def tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Input tokens ``(B, C + h·w, D)`` (class tokens first) and the patch grid ``(h, w)``."""
        check_images(images)
        height, width = images.shape[-2:]
        if height < self.patch_size[0] or width < self.patch_size[1]:
            raise ValueError(f"images of {height}×{width} pixels are smaller than one "
                             f"{self.patch_size[0]}×{self.patch_size[1]} patch of backbone {self.backbone_name!r}")
        x = self.patch_embed.proj(normalize_input(images, self.input_space, self.mean, self.std))
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self._pos_embed_for(height, width, grid))
        return self.norm_pre(x), grid

    def _patch_map(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens of the final tokens as a map ``(B, D, h, w)``."""
        patches = x[:, self.num_classes:]
        return patches.transpose(1, 2).reshape(x.shape[0], self.embed_dim, *grid)

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Classify.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            labels: ``(B, C)`` multi-hot, or ``None``.

        Returns:
            ``{"logits": (B, C)}`` from the class tokens, for V2 also ``"patch_logits"`` ``(B, C)``;
            with labels ``"loss"`` (sum of the multilabel soft margin losses), ``"cls_loss"`` and,
            for V2, ``"patch_loss"``.
        """
        x, grid = self.tokens(images)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and self.version == 1:  # V1 reads only the final class tokens: the last block
                x = block_first_rows(cast(Block, block), x, self.num_classes)  # forms only their rows
            else:
                x = block(x)
        out = {"logits": x[:, : self.num_classes].mean(dim=-1)}
        if self.version == 2:
            out["patch_logits"] = self.head(self._patch_map(x, grid)).mean(dim=(2, 3))
        if labels is not None:
            out["cls_loss"] = multilabel_soft_margin_loss(out["logits"], labels)
            out["loss"] = out["cls_loss"]
            if self.version == 2:
                out["patch_loss"] = multilabel_soft_margin_loss(out["patch_logits"], labels)
                out["loss"] = out["cls_loss"] + out["patch_loss"]
        return out

    # ------------------------------------------------------------------ CAMs
    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised maps ``(B, C, h, w)`` at the patch grid, for one pass (no flip, no resize).

        With gradients enabled every read block's attention is formed explicitly, all heads at once.
        Under ``torch.no_grad()`` only what is read is formed, head by head, into running sums: with
        ``patch_refine`` every block's full map (its patch rows refine; its class rows make the CAM
        in the last ``cam_layers`` blocks); without it only the ``C`` class-token rows of the last
        ``cam_layers`` blocks, the other blocks running fused. Both give the same maps.
        """
        x, grid = self.tokens(images)
        if torch.is_grad_enabled():
            class_to_patch, patch_to_patch, x = self._attention_sums_autograd(x)
        else:
            class_to_patch, patch_to_patch, x = self._attention_sums(x)
        maps = class_to_patch  # (B, C, P)
        if self.version == 2 and self.attention_type != "attention":
            patch_cam = F.relu(self.head(self._patch_map(x, grid))).flatten(2)
            maps = maps * patch_cam if self.attention_type == "fused" else patch_cam
        if patch_to_patch is not None:
            maps = torch.bmm(patch_to_patch, maps.transpose(1, 2)).transpose(1, 2)
        # the refined maps come out (B, P, C) in memory: made contiguous here (C·P values), else the
        # resize to the image keeps that channels-last layout and every per-class step after it
        # (flip, sum, mask, min/max) strides across memory (the min/max alone 10x slower)
        return maps.reshape(x.shape[0], self.num_classes, *grid).contiguous()

    def _attention_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(class_to_patch (B, C, P), patch_to_patch (B, P, P) or None, final tokens)``: the head
        means summed over the CAM blocks (over all blocks for ``patch_to_patch``), by running sums."""
        c, depth = self.num_classes, len(self.blocks)
        batch, tokens = x.shape[:2]
        class_rows = x.new_zeros(batch, c, tokens)
        full = x.new_zeros(batch, tokens, tokens) if self.patch_refine else None
        for i, block in enumerate(self.blocks):
            targets = [full] if full is not None else []
            if i >= depth - self.cam_layers:
                targets.append(class_rows)
            # timm's blocks: an nn.Sequential of Blocks; a block whose attention is not read runs fused,
            # and the last block's tokens are needed only by V2's patch CAM
            output = i < depth - 1 or (self.version == 2 and self.attention_type != "attention")
            x = block_adding_attention(cast(Block, block), x, targets, output) if targets else block(x)
        heads = int(cast(Any, self.blocks[0]).attn.num_heads)
        class_to_patch = class_rows[:, :, c:] / heads
        return class_to_patch, None if full is None else full[:, c:, c:] / heads, x

    def _attention_sums_autograd(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """:meth:`_attention_sums` with every read block's attention formed explicitly (differentiable)."""
        c, depth = self.num_classes, len(self.blocks)
        class_to_patch = patch_to_patch = None
        for i, block in enumerate(self.blocks):
            if not self.patch_refine and i < depth - self.cam_layers:
                x = block(x)  # this block's attention is not read: the fused path
                continue
            x, attn = block_with_attention(cast(Block, block), x)
            attn = attn.mean(dim=1)  # (B, N, N), heads averaged
            if i >= depth - self.cam_layers:
                part = attn[:, :c, c:]
                class_to_patch = part if class_to_patch is None else class_to_patch + part
            if self.patch_refine:
                part = attn[:, c:, c:]
                patch_to_patch = part if patch_to_patch is None else patch_to_patch + part
        assert class_to_patch is not None
        return class_to_patch, patch_to_patch, x

    def cams(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
    ) -> torch.Tensor:
        """CAMs ``(B, C, H, W)`` in [0, 1], zero for absent classes.

        Every pass's maps are resized to the image, summed over ``scales`` and (with ``flip``) the
        mirrored pass, masked by ``labels`` and min–max normalised per class, as the official code.
        A scale and its mirror run as one batch. Keeps gradients; call ``eval()`` and wrap in
        ``torch.no_grad()`` for inference.
        """
        return multiscale_cams(
            self.raw_cams,
            images,
            labels,
            scales=self.scales if scales is None else scales,
            flip=self.flip if flip is None else flip,
            normalize="minmax",
            relu=False,
            eps=1e-8,
            batch_flip=True,  # no batch statistics in a ViT: an image's maps do not depend on its batch
        )

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """AdamW groups as timm's optimiser factory makes them: no weight decay for biases, norms,
        the class tokens and the position embeddings."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name in ("cls_token", "pos_embed") else decay).append(p)
        return [
            {"params": decay, "lr": lr, "lr_mult": 1.0},
            {"params": no_decay, "lr": lr, "lr_mult": 1.0, "weight_decay": 0.0},
        ]

    def extra_repr(self) -> str:
        return (f"version={self.version}, num_classes={self.num_classes}, backbone={self.backbone_name!r}, "
                f"cam_layers={self.cam_layers}, patch_refine={self.patch_refine}")


def _fixed_version_signature() -> inspect.Signature:
    """``MCTformer.__init__``'s signature without ``version``, so the registry can list and check
    the keywords of the V1/V2 entry points."""
    sig = inspect.signature(MCTformer.__init__)
    return sig.replace(parameters=[p for name, p in sig.parameters.items() if name != "version"])


class MCTformerV1(MCTformer):
    """MCTformer V1: class-token attention CAMs. See :class:`MCTformer` for the arguments."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        if "version" in kwargs:
            raise TypeError("mctformer_v1 fixes version=1; use cams/mctformer_v2 for V2")
        super().__init__(num_classes, version=1, **kwargs)


class MCTformerV2(MCTformer):
    """MCTformer V2: class-token attention fused with a patch-token CAM. See :class:`MCTformer`."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        if "version" in kwargs:
            raise TypeError("mctformer_v2 fixes version=2; use cams/mctformer_v1 for V1")
        super().__init__(num_classes, version=2, **kwargs)


MCTformerV1.__init__.__signature__ = _fixed_version_signature()  # type: ignore[attr-defined]
MCTformerV2.__init__.__signature__ = _fixed_version_signature()  # type: ignore[attr-defined]

__all__ = ["ATTENTION_TYPES", "MCTformer", "MCTformerV1", "MCTformerV2"]
