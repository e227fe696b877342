"""The world's CLIP: contrastive image-caption pretraining of ``wsss-synthetic-clip``.

Symmetric InfoNCE over a batch of (image, caption) pairs (Radford et al. 2021, Fig. 3): both
embeddings L2-normalised, logits ``exp(t) * I @ T^T`` with open_clip's learnable temperature
``t`` (initialised at ``log(1/0.07)``, clamped at ``log(100)``), cross-entropy of each image over the
batch's captions and of each caption over the images, averaged. Each epoch draws each scene's
caption afresh (see :mod:`.pool`). Images are fed through :meth:`CLIPModel.encode_image` (RGB in
[0, 1], normalised inside with the model's own mean/std), exactly as the toolkit will use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss_kit.clip import CLIPModel, load_clip, zero_shot_scores
from wsss_kit.data.captions import ATTRIBUTES
from wsss_kit.data.synthetic_scene import CLASS_NAMES
from wsss_kit.metrics import average_precision

from .pool import RenderedPool
from .recipes import Recipe

__all__ = ["CLASS_PROMPTS", "WATER_PROMPT", "build_clip", "clamp_logit_scale", "clip_loss", "contrastive_loss",
           "evaluate_clip", "tag_probe"]

CLASS_PROMPTS = tuple(f"a photo of a {name}." for name in CLASS_NAMES)
"""The zero-shot prompts of the five classes (OpenAI's template)."""
WATER_PROMPT = "a photo of water."

_MAX_LOGIT_SCALE = math.log(100.0)


def build_clip(recipe: Recipe, device: torch.device) -> CLIPModel:
    """A randomly initialised, trainable ``recipe.architecture`` (fp32, train mode follows the parent)."""
    return load_clip(recipe.architecture, weights=None, device=device, precision="fp32", frozen=False,
                     keep_eval=False)


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE of ``B`` matching pairs.

    Args:
        image_emb, text_emb: ``(B, E)`` embeddings (normalised here); row ``i`` of each is a pair.
        logit_scale: scalar, the log of the inverse temperature.
    """
    img = F.normalize(image_emb, dim=-1)
    txt = F.normalize(text_emb, dim=-1)
    logits = logit_scale.exp() * img @ txt.T
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def tag_probe(clip: CLIPModel) -> torch.nn.Linear:
    """A linear probe from the CLIP's image embedding to the scene tags (the auxiliary ``tag_loss``)."""
    return torch.nn.Linear(int(clip.model.text_projection.shape[1]), len(ATTRIBUTES))


def clip_loss(clip: CLIPModel, pool: RenderedPool, probe: torch.nn.Linear | None = None, tag_weight: float = 0.0):
    """The step loss on a batch: each scene's caption of this epoch (cycling if the run outlasts them),
    plus ``tag_weight`` times the tags' BCE through ``probe`` on the normalised image embedding."""
    def step_loss(idx: Tensor, epoch: int, images: Tensor) -> Tensor:
        captions = [pool.captions[i][epoch % len(pool.captions[i])] for i in idx.tolist()]
        tokens = clip.tokenize(captions)
        image_emb = clip.encode_image(images)
        loss = contrastive_loss(image_emb, clip.encode_text(tokens), clip.model.logit_scale)
        if probe is not None and tag_weight > 0:
            logits = probe(F.normalize(image_emb, dim=-1))
            loss = loss + tag_weight * F.binary_cross_entropy_with_logits(logits, pool.attributes[idx].to(logits.device))
        return loss
    return step_loss


def clamp_logit_scale(clip: CLIPModel) -> None:
    """Keep the temperature above 1/100, as open_clip's training loop does after each step."""
    with torch.no_grad():
        clip.model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)


def evaluate_clip(clip: CLIPModel, pool: RenderedPool) -> dict[str, object]:
    """Zero-shot AP per class (prompt ``"a photo of a {class}."``), their mean, and the AP of
    ``"a photo of water."`` over the scenes of ``pool`` (cosine similarity, each prompt on its own)."""
    scores = zero_shot_scores(clip, pool.images, [*CLASS_PROMPTS, WATER_PROMPT])
    ap = average_precision(scores[:, :len(CLASS_NAMES)], pool.classes)
    water = float(average_precision(scores[:, -1], pool.water)[0])
    return {"images": len(pool), "prompts": [*CLASS_PROMPTS, WATER_PROMPT],
            "mAP_classes": round(float(ap[~ap.isnan()].mean()), 4),
            "AP": {c: round(float(v), 4) for c, v in zip(CLASS_NAMES, ap)}, "AP_water": round(water, 4),
            "logit_scale": round(float(clip.model.logit_scale.detach().exp()), 3)}
