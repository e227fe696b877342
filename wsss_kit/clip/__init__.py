"""CLIP access: one place that builds open_clip models and exposes what WSSS methods need.

::

    from wsss_kit.clip import load_clip

    clip = load_clip("ViT-B-16", weights="released:clip_vit_b16_openai", normalization="imagenet",
                     pos_interpolation="bilinear")            # frozen, eval, fp16 autocast on CUDA
    feats = clip.dense_features(images, layers=(3, 5, 7, 11))  # maps (B, 768, H/16, W/16) + pixels
    text = clip.encode_text(["a photo of cat.", "a photo of dog."])       # (2, 512), cached
    prompts = clip.tokenize_prompts(["cat", "dog"], template=None, context_length=5)
    emb = clip.encode_text_with_context(prompts, ctx, position="after_start")   # ctx (8, 512)

Importing this package does not import open_clip; building a model does. The tiny random
architecture ``"wsss-tiny-clip"`` (:data:`TINY_CLIP`) serves tests and the demo;
``"wsss-synthetic-clip"`` (:data:`SYNTHETIC_CLIP`) is the embedded world's CLIP, whose weights ship
with wsss_kit as ``released:wsss_synthetic_clip``. A custom architecture is data:
``load_clip("my-arch.json")``, ``load_clip({"embed_dim": ..., "vision_cfg": ...,
"text_cfg": ...})`` or ``register_clip_config("my-arch", cfg)`` then ``load_clip("my-arch")``.
"""

from .configs import (
    CONFIG_DIR,
    SYNTHETIC_CLIP,
    TINY_CLIP,
    clip_architecture,
    register_clip_config,
    validate_clip_config,
)
from .image import DenseFeatures, interpolate_pos_embed
from .loading import DEFAULT_CLIP_WEIGHTS, frozen_clip, load_clip
from .model import CLIPModel
from .preprocessing import (
    AUTO_BF16_MIN_WIDTH,
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRECISIONS,
    cpu_has_fast_bf16,
    resolve_precision,
)
from .text import POSITIONS, ContextPosition, TokenizedPrompts, tokenize_prompts
from .zero_shot import zero_shot_scores

__all__ = [
    "AUTO_BF16_MIN_WIDTH",
    "CLIP_MEAN",
    "DEFAULT_CLIP_WEIGHTS",
    "CLIP_STD",
    "CONFIG_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "POSITIONS",
    "PRECISIONS",
    "SYNTHETIC_CLIP",
    "TINY_CLIP",
    "CLIPModel",
    "ContextPosition",
    "DenseFeatures",
    "TokenizedPrompts",
    "clip_architecture",
    "cpu_has_fast_bf16",
    "frozen_clip",
    "interpolate_pos_embed",
    "load_clip",
    "register_clip_config",
    "resolve_precision",
    "tokenize_prompts",
    "validate_clip_config",
    "zero_shot_scores",
]
