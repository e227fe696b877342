"""The embedded world's backbones: a narrow ResNet-50 and a DeiT-style ViT, registered with timm.

The synthetic world (:mod:`wsss_kit.data.synthetic`) has no ImageNet; its stand-in is a
classifier pretrained on the world's own pretraining split (``python -m benchmarks pretrain
resnet|vit``). These are the architectures of those "ImageNet" backbones, sized so that a CAM
network trains on 2 CPU cores in minutes:

- ``wsss_world_resnet50``: timm's :class:`~timm.models.resnet.ResNet` with ResNet-50's bottleneck
  layout (3, 4, 6, 3 blocks) and stem (7×7 convolution to 64 channels, max pool) at a quarter of
  the stage width (channels 16, 32, 64, 128, so features of 64, 128, 256 and 512 channels; about
  1.5M parameters without the classifier). Everything
  that takes a ResNet-50 takes it: ``features_only``, ``output_stride`` 8/16, bottleneck checks
  (DeepLab V2), smp's ``tu-wsss_world_resnet50`` encoder.
- ``wsss_world_vit``: timm's :class:`~timm.models.vision_transformer.VisionTransformer`, DeiT-style
  (one class token, no distillation token), 128-px input, patch 8 (a 16 × 16 token grid), width
  128, 6 blocks of 4 heads, MLP ratio 4 (about 1.25M parameters): what MCTformer V1/V2 fine-tune.

Both read images normalised with ImageNet's mean and std, as the CAM networks feed them. Their
weights come only through the weights resolver, ``released:wsss_world_resnet50`` and
``released:wsss_world_vit`` (files shipped inside the package, see
:data:`wsss_kit.weights.RELEASED`), e.g.
``create_timm_model("wsss_world_resnet50", weights="released:wsss_world_resnet50")``; the timm
pretrained configs have no URL, and ``pretrained=True`` is refused with that hint rather than
silently initialising at random.

Importing :mod:`wsss_kit` registers both names (timm's ``is_model``, ``create_model`` and
``list_models`` see them); importing again, or reloading this module, registers nothing twice.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models.resnet import Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from .errors import WeightsError

__all__ = ["WORLD_BACKBONES", "WORLD_IMAGE_SIZE", "register_world_backbones", "wsss_world_resnet50", "wsss_world_vit"]

WORLD_IMAGE_SIZE = 128
"""Side of the synthetic world's images, in pixels (the backbones' native input size)."""

WORLD_BACKBONES = ("wsss_world_resnet50", "wsss_world_vit")
"""The timm model names this module registers; each has a ``released:<name>`` weights file."""

RESNET_ARGS: dict[str, Any] = dict(block=Bottleneck, layers=(3, 4, 6, 3), channels=(16, 32, 64, 128))
"""``wsss_world_resnet50``'s :class:`~timm.models.resnet.ResNet` keywords (ResNet-50 at a quarter width). The
7×7 stem keeps ResNet-50's 64 channels: timm's ``stem_width`` only sizes a deep (3×3) stem."""

VIT_ARGS: dict[str, Any] = dict(img_size=WORLD_IMAGE_SIZE, patch_size=8, embed_dim=128, depth=6, num_heads=4,
                                mlp_ratio=4.0)
"""``wsss_world_vit``'s :class:`~timm.models.vision_transformer.VisionTransformer` keywords (DeiT-style)."""


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # no url / hf_hub_id: the weights come only through the released: resolver (package data)
    return {"url": "", "num_classes": 1000, "input_size": (3, WORLD_IMAGE_SIZE, WORLD_IMAGE_SIZE),
            "crop_pct": 1.0, "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "license": "apache-2.0", **kwargs}


# timm's register_model reads this module-level table (its name is timm's convention)
default_cfgs = generate_default_cfgs({
    "wsss_world_resnet50": _cfg(pool_size=(4, 4), interpolation="bilinear", first_conv="conv1", classifier="fc"),
    "wsss_world_vit": _cfg(pool_size=None, interpolation="bicubic", fixed_input_size=True,
                           first_conv="patch_embed.proj", classifier="head"),
})


def _refuse_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise WeightsError(
            f"timm model {name!r} has no downloadable pretrained tag: its weights ship with wsss_kit; build it with "
            f"wsss_kit.weights.create_timm_model({name!r}, weights='released:{name}') (or weights= in a config)")


def wsss_world_resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """The world's ResNet-50: bottleneck blocks (3, 4, 6, 3), stage channels (16, 32, 64, 128) → features
    ``(B, 512, H/32, W/32)`` (64/128/256/512 channels after ``layer1..4``). Keywords go to timm's
    :class:`~timm.models.resnet.ResNet` (``num_classes``, ``output_stride``, ``features_only``...)."""
    _refuse_pretrained("wsss_world_resnet50", pretrained)
    return build_model_with_cfg(ResNet, "wsss_world_resnet50", False, **dict(RESNET_ARGS, **kwargs))


def wsss_world_vit(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The world's DeiT-style ViT: 128 px, patch 8 (16 × 16 tokens + 1 class token), width 128, 6 blocks,
    4 heads. Keywords go to timm's :class:`~timm.models.vision_transformer.VisionTransformer` (``img_size``,
    ``num_classes``, ``drop_path_rate``...); ``features_only`` gives ``(B, 128, H/8, W/8)`` token maps."""
    _refuse_pretrained("wsss_world_vit", pretrained)
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(VisionTransformer, "wsss_world_vit", False, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
                                **dict(VIT_ARGS, **kwargs))


def register_world_backbones() -> tuple[str, ...]:
    """Register :data:`WORLD_BACKBONES` with timm (idempotent); return their names.

    A name this module already registered (an earlier import, or before :func:`importlib.reload`) is
    left as it is, so timm never warns about overwriting it.
    """
    from timm.models import is_model, model_entrypoint, register_model

    for fn in (wsss_world_resnet50, wsss_world_vit):
        if is_model(fn.__name__) and getattr(model_entrypoint(fn.__name__), "__module__", None) == __name__:
            continue
        register_model(fn)
    return WORLD_BACKBONES


register_world_backbones()
