"""The world's "ImageNet" backbones: multi-label classification over the scene tags.

The pretext is :data:`~wsss_kit.data.captions.ATTRIBUTES` (the 5 classes, their 10 subtypes and
the background facts), binary cross-entropy per tag; no mask is read. The backbone keeps its
classifier over the tags (``num_classes = len(ATTRIBUTES)``); loading it into a model with another
``num_classes`` (or ``features_only``) drops that head (see
:func:`wsss_kit.weights.load_weights_into`). Images go in normalised with ImageNet's mean and
std, as the CAM networks feed their backbones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsss_kit.clip.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from wsss_kit.data.captions import ATTRIBUTES
from wsss_kit.data.synthetic_scene import CLASS_NAMES
from wsss_kit.metrics import average_precision

from .pool import RenderedPool
from .recipes import Recipe

__all__ = ["build_classifier", "classifier_loss", "evaluate_classifier"]


def build_classifier(recipe: Recipe) -> nn.Module:
    """``timm.create_model(recipe.architecture, num_classes=len(ATTRIBUTES))``, randomly initialised."""
    import timm

    import wsss_kit  # noqa: F401  (registers the world's timm architectures)

    return timm.create_model(recipe.architecture, pretrained=False, num_classes=len(ATTRIBUTES))


def _normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def classifier_loss(model: nn.Module, pool: RenderedPool):
    """The step loss: mean BCE over tags of ``model(normalised images)``."""
    def step_loss(idx: Tensor, epoch: int, images: Tensor) -> Tensor:
        logits = model(_normalise(images))
        return F.binary_cross_entropy_with_logits(logits, pool.attributes[idx].to(images.device))
    return step_loss


@torch.no_grad()
def evaluate_classifier(model: nn.Module, pool: RenderedPool, device: torch.device,
                        batch_size: int = 64) -> dict[str, object]:
    """The head's AP per class and their mean over the 5 classes, and the AP of "water", on ``pool``."""
    model.eval()
    scores = []
    for start in range(0, len(pool), batch_size):
        images = pool.images[start:start + batch_size].to(device).float().div_(255.0)
        scores.append(model(_normalise(images)).float().cpu())
    logits = torch.cat(scores)
    cls = logits[:, [ATTRIBUTES.index(c) for c in CLASS_NAMES]]
    ap = average_precision(cls, pool.classes)
    water = float(average_precision(logits[:, ATTRIBUTES.index("water")], pool.water)[0])
    return {"images": len(pool), "mAP_classes": round(float(ap[~ap.isnan()].mean()), 4),
            "AP": {c: round(float(v), 4) for c, v in zip(CLASS_NAMES, ap)}, "AP_water": round(water, 4)}
