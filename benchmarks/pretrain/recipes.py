"""The shipped pretraining recipes, as data: one :class:`Recipe` per foundation model.

Sizes are set so that each run takes about 12-15 minutes on 2 CPU cores (the step times measured
are in the JSON record of each run); ``python -m benchmarks pretrain MODEL`` with no options runs
exactly these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODELS", "RECIPES", "Recipe", "default_record", "default_weights"]

_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Recipe:
    """How one foundation model is pretrained.

    Attributes:
        model: ``"clip"``, ``"resnet"`` or ``"vit"``.
        architecture: the open_clip / timm architecture name it trains.
        weights_name: the ``released:`` name (and file stem) of the shipped weights.
        steps: optimizer steps. images: scenes in the rendered pool (the ``"pretrain"`` split).
        batch_size: images per step. lr, weight_decay: AdamW's. warmup: linear warm-up steps,
            then cosine decay to 0.
        min_scale: smallest crop side (fraction of the image) of the zoom augmentation; flip: random
            horizontal flips.
        eval_images: held-out scenes scored per held-out set.
        eval_every: score the first held-out set every this many steps too (0: only at the end), so
            the record shows whether more steps would still help.
        tag_loss: CLIP only: weight of an auxiliary multi-label loss (BCE over the scene tags of
            :data:`~wsss_kit.data.captions.ATTRIBUTES`, through a linear probe on the normalised image
            embedding) added to the contrastive loss; 0 disables it. The probe is not part of the
            shipped CLIP (which is contrastive only). Measured: 600 steps at lr 7e-4 with tag_loss 1
            reached held-out class mAP 0.69 / 0.68 and water AP 0.57 / 0.65 (val seed 123 / test
            seed 7) against 0.64 / 0.64 and 0.90 / 0.92 (raw cosine) for the from-scratch recipe.
        image_init: CLIP only: the ``released:`` name of a world ViT (timm layout) whose weights become
            the CLIP's image tower (:func:`.lit.world_vit_to_clip_visual`); ``""``: random.
        lock_image: CLIP only: keep the image tower fixed (all but its projection) and train the text
            tower against it (LiT); its pooled tokens are computed once, for each scene and its mirror.
        prompt_loss: CLIP with ``lock_image`` only: weight of the pairwise sigmoid loss of each image
            against a short prompt per scene tag (:func:`.contrastive.prompt_tag_loss`), which makes a
            single prompt's raw cosine comparable across images; 0 disables it.
        cutouts: CLIP with ``prompt_loss`` only: also train the tag loss on two cut-out views of each
            scene (one class on black; the scene with that class blacked out; :func:`.lit.cutout_views`),
            the kind of image CLIMS and POLE show CLIP. Reads the pretraining split's masks.
    """

    model: str
    architecture: str
    weights_name: str
    steps: int
    images: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int
    min_scale: float = 0.8
    flip: bool = True
    eval_images: int = 200
    eval_every: int = 100
    tag_loss: float = 0.0
    image_init: str = ""
    lock_image: bool = False
    prompt_loss: float = 0.0
    cutouts: bool = False

    def replace(self, **changes: object) -> Recipe:
        """A copy with ``changes`` (``None`` values are ignored, so CLI defaults pass through)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field out of range."""
        for name in ("steps", "images", "batch_size", "eval_images"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"pretrain {self.model}: {name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ValueError(f"pretrain {self.model}: eval_every must be >= 0, got {self.eval_every}")
        if self.warmup < 0:
            raise ValueError(f"pretrain {self.model}: warmup must be >= 0, got {self.warmup}")
        if not self.tag_loss >= 0:
            raise ValueError(f"pretrain {self.model}: tag_loss must be >= 0, got {self.tag_loss}")
        if not self.lr > 0:
            raise ValueError(f"pretrain {self.model}: lr must be > 0, got {self.lr}")
        if self.model != "clip" and (self.image_init or self.lock_image):
            raise ValueError(f"pretrain {self.model}: image_init / lock_image are CLIP options")
        if not self.prompt_loss >= 0:
            raise ValueError(f"pretrain {self.model}: prompt_loss must be >= 0, got {self.prompt_loss}")
        if self.prompt_loss and not self.lock_image:
            raise ValueError(f"pretrain {self.model}: prompt_loss is an option of the locked-image (lock_image) recipe")
        if self.cutouts and not self.prompt_loss:
            raise ValueError(f"pretrain {self.model}: cutouts are trained through prompt_loss: set it > 0")
        if self.lock_image and not self.image_init:
            raise ValueError(f"pretrain {self.model}: lock_image needs image_init (a locked random tower learns nothing)")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"pretrain {self.model}: min_scale must be in (0, 1], got {self.min_scale}")


RECIPES: dict[str, Recipe] = {
    "clip": Recipe("clip", "wsss-synthetic-clip", "wsss_synthetic_clip", steps=300, images=6000, batch_size=256,
                   lr=1e-3, weight_decay=0.1, warmup=50, image_init="wsss_world_vit", lock_image=True,
                   prompt_loss=1.0, cutouts=True),
    "resnet": Recipe("resnet", "wsss_world_resnet50", "wsss_world_resnet50", steps=1000, images=8000, batch_size=64,
                     lr=2e-3, weight_decay=0.05, warmup=50),
    "vit": Recipe("vit", "wsss_world_vit", "wsss_world_vit", steps=500, images=8000, batch_size=64,
                  lr=1e-3, weight_decay=0.05, warmup=50),
}
"""The shipped recipes (``python -m benchmarks pretrain MODEL`` defaults)."""

MODELS: tuple[str, ...] = tuple(RECIPES)


def default_weights(recipe: Recipe) -> Path:
    """Where the shipped file lives: ``wsss_kit/pretrained/<weights_name>.pt``."""
    return _ROOT / "wsss_kit" / "pretrained" / f"{recipe.weights_name}.pt"


def default_record(recipe: Recipe) -> Path:
    """``benchmarks/results/pretrain_<model>.json``."""
    return _ROOT / "benchmarks" / "results" / f"pretrain_{recipe.model}.json"
