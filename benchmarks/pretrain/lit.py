"""Locked-image tuning (LiT, Zhai et al. 2022) of the world's CLIP on the world's pretrained ViT.

The contrastive recipe trained from scratch (:mod:`.contrastive`) reached a zero-shot class mAP of
only ~0.64 in the 30-minute CPU budget, while the world ViT's classification head reads the same
classes at ~0.99 mAP: the image side is the hard part, and the world already has a good one. LiT
keeps that image tower and teaches the text tower (plus the visual projection) to meet it.

:func:`world_vit_to_clip_visual` maps a ``wsss_world_vit`` state dict (timm layout) onto the
``visual.*`` keys of ``wsss-synthetic-clip`` (open_clip layout, ``no_ln_pre``), exactly: the
same tokens come out of every block. Two differences of the layouts are folded into the weights:

- timm's patch embedding has a bias, open_clip's ``conv1`` none: the bias is added to every patch
  token and nothing else, so it moves into the patch rows of the position embedding;
- the ViT reads ImageNet-normalised pixels, the CLIP normalises with its own (OpenAI) mean/std:
  the patch convolution is affine in its input and has no padding, so rescaling its weight per
  input channel and adding a constant per output channel (again into the position rows) makes it
  read CLIP-normalised pixels as the ViT read ImageNet-normalised ones.

With the image tower locked, its pooled token does not change during training, so
:func:`pooled_features` computes it once per image (and view) before the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from wsss_kit.data.captions import ATTRIBUTES
from wsss_kit.data.synthetic_scene import CLASS_NAMES, SUBTYPES

from wsss_kit.clip import CLIPModel
from wsss_kit.clip.image import embed_patches, run_blocks
from wsss_kit.clip.preprocessing import normalization_stats

__all__ = ["IMAGENET_STATS", "CutoutViews", "class_tag_mask", "cutout_views", "load_world_vit_into", "pooled_features",
           "world_vit_to_clip_visual"]

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""The mean/std the world ViT was pretrained with (timm's ImageNet defaults)."""

_BLOCK_KEYS = {
    "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
    "attn.qkv.weight": "attn.in_proj_weight", "attn.qkv.bias": "attn.in_proj_bias",
    "attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias",
    "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight", "mlp.fc1.bias": "mlp.c_fc.bias",
    "mlp.fc2.weight": "mlp.c_proj.weight", "mlp.fc2.bias": "mlp.c_proj.bias",
}


def world_vit_to_clip_visual(vit: Mapping[str, Tensor], clip_mean: tuple[float, ...],
                             clip_std: tuple[float, ...],
                             vit_stats: tuple[tuple[float, ...], tuple[float, ...]] = IMAGENET_STATS
                             ) -> dict[str, Tensor]:
    """The open_clip ``visual.*`` tensors (all but ``visual.proj``) of a timm DeiT-style ViT.

    Args:
        vit: timm ``VisionTransformer`` state dict (``patch_embed.proj``, ``cls_token``,
            ``pos_embed (1, 1 + N, C)``, ``blocks.i.*``, ``norm``; the ``head`` is dropped).
        clip_mean, clip_std: the normalisation the CLIP applies to ``[0, 1]`` pixels.
        vit_stats: the ``(mean, std)`` the ViT was trained with.

    Returns:
        ``{"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
        "visual.transformer.resblocks.i.*", "visual.ln_post.*"}`` in float32.

    Raises:
        KeyError: a tensor the mapping needs is missing (named).
    """
    def get(key: str) -> Tensor:
        if key not in vit:
            raise KeyError(f"world_vit_to_clip_visual: the ViT state dict has no {key!r}")
        return vit[key].float()

    weight, bias = get("patch_embed.proj.weight"), get("patch_embed.proj.bias")
    vit_mean, vit_std = (torch.tensor(v, dtype=torch.float32) for v in vit_stats)
    c_mean, c_std = torch.tensor(clip_mean, dtype=torch.float32), torch.tensor(clip_std, dtype=torch.float32)
    # x_vit = (x * c_std + c_mean - vit_mean) / vit_std, with x the CLIP-normalised pixel
    conv = weight * (c_std / vit_std).view(1, 3, 1, 1)
    shift = (weight * ((c_mean - vit_mean) / vit_std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    pos = get("pos_embed")[0].clone()
    pos[1:] += bias + shift
    out = {
        "visual.conv1.weight": conv,
        "visual.class_embedding": get("cls_token").reshape(-1),
        "visual.positional_embedding": pos,
        "visual.ln_post.weight": get("norm.weight"),
        "visual.ln_post.bias": get("norm.bias"),
    }
    depth = 1 + max(int(k.split(".")[1]) for k in vit if k.startswith("blocks."))
    for i in range(depth):
        for src, dst in _BLOCK_KEYS.items():
            out[f"visual.transformer.resblocks.{i}.{dst}"] = get(f"blocks.{i}.{src}")
    return out


def load_world_vit_into(clip: CLIPModel, vit: Mapping[str, Tensor]) -> None:
    """Copy the world ViT ``vit`` into ``clip``'s image tower (shapes and depth must match)."""
    mean, std = normalization_stats("clip", clip.model)
    mapped = world_vit_to_clip_visual(vit, mean, std)
    own = clip.model.state_dict()
    missing = [k for k in own if k.startswith("visual.") and k != "visual.proj" and k not in mapped]
    extra = [k for k in mapped if k not in own]
    if missing or extra:
        raise ValueError(f"world ViT -> {clip.name}: the towers differ (CLIP keys not covered: {missing[:4]}, "
                         f"ViT keys with no CLIP place: {extra[:4]}); the CLIP's vision_cfg must match the ViT's "
                         "depth, width, heads and patch, with no_ln_pre")
    for key, value in mapped.items():
        if own[key].shape != value.shape:
            raise ValueError(f"world ViT -> {clip.name}: {key} is {tuple(value.shape)} in the ViT, "
                             f"{tuple(own[key].shape)} in the CLIP")
    clip.model.load_state_dict({**own, **mapped})


@torch.no_grad()
def pooled_features(clip: CLIPModel, images: Tensor, batch_size: int = 128, flip: bool = False) -> Tensor:
    """The image tower's pooled token after ``ln_post``, before the projection: ``(N, width)``.

    Args:
        images: ``uint8 (N, 3, H, W)``.
        flip: mirror the images first (a second view of each).
    """
    visual = clip.model.visual
    device = next(clip.model.parameters()).device
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].float().div_(255.0)
        if flip:
            x = x.flip(-1)
        tokens, _ = embed_patches(visual, clip.normalize(x.to(device)))
        tokens, _ = run_blocks(visual, tokens)
        out.append(visual.ln_post(tokens[:, 0]).float().cpu())
    return torch.cat(out)


def class_tag_mask() -> Tensor:
    """``bool (5, A)``: row ``c`` marks the tags of class ``c`` (its name and its two subtypes)."""
    out = torch.zeros(len(CLASS_NAMES), len(ATTRIBUTES), dtype=torch.bool)
    for c, name in enumerate(CLASS_NAMES):
        for tag in (name, *SUBTYPES[name]):
            out[c, ATTRIBUTES.index(tag)] = True
    return out


@dataclass
class CutoutViews:
    """Two masked views of each scene, about one of its classes drawn at random.

    Attributes:
        only: ``uint8 (N, 3, H, W)``: that class's pixels on black (what CLIMS shows CLIP as the
            foreground of a CAM).
        removed: ``uint8 (N, 3, H, W)``: the scene with that class's pixels black (CLIMS's background).
        only_tags, removed_tags: ``float (N, A)``: the tags each view still shows: the class and its
            subtypes present for ``only``; every other tag of the scene for ``removed``.
    """

    only: Tensor
    removed: Tensor
    only_tags: Tensor
    removed_tags: Tensor


def cutout_views(images: Tensor, masks: Tensor, classes: Tensor, attributes: Tensor,
                 generator: torch.Generator) -> CutoutViews:
    """Cut-out views of pretraining scenes (pretraining-split masks only).

    Args:
        images: ``uint8 (N, 3, H, W)``. masks: ``uint8 (N, H, W)`` class ids (0 background).
        classes: ``(N, 5)`` multi-hot. attributes: ``(N, A)`` multi-hot tags.
        generator: draws each scene's class.
    """
    n = images.shape[0]
    weights = classes.float() + 1e-9 * (classes.sum(dim=1, keepdim=True) == 0)  # a scene has >= 1 class
    chosen = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (N,) in 0..4
    keep = (masks.long() == (chosen + 1).view(n, 1, 1)).unsqueeze(1)  # (N, 1, H, W)
    tag_rows = class_tag_mask()[chosen].float()  # (N, A)
    return CutoutViews(only=images * keep, removed=images * ~keep, only_tags=attributes * tag_rows,
                       removed_tags=attributes * (1 - tag_rows))
