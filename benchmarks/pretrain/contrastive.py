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
from wsss_kit.data.captions import ATTRIBUTES, BACKGROUND_WORDS, CLASS_WORDS, SUBTYPE_WORDS
from wsss_kit.data.synthetic_scene import CLASS_NAMES
from wsss_kit.metrics import average_precision

from .pool import RenderedPool
from .recipes import Recipe

__all__ = ["CLASS_PROMPTS", "WATER_CONTRAST", "WATER_PROMPT", "build_clip", "clamp_logit_scale", "clip_loss",
           "contrastive_loss", "evaluate_clip", "locked_clip_loss", "prompt_tag_loss", "tag_phrases",
           "tag_probe"]

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


_NOUN_TEMPLATES = ("a photo of a {}.", "a {}.", "a picture showing a {}.")
_PLACE_TEMPLATES = ("a photo of {}.", "{}.", "a picture of {}.")
_PLACE_KEYS = {"water": "water", "grass": "grass", "sand": "sand", "cloudy": "cloudy", "rocks": "rocks"}


def tag_phrases() -> list[tuple[str, ...]]:
    """For each tag of :data:`ATTRIBUTES`, the short prompts that name it and nothing else: a class
    by its generic words (``"a ball."``: true of beach balls and footballs alike), a subtype by its
    own words, a background by its phrases (``"a photo of the lake."``)."""
    out = []
    for tag in ATTRIBUTES:
        if tag in CLASS_WORDS or tag in SUBTYPE_WORDS:
            words = CLASS_WORDS.get(tag) or SUBTYPE_WORDS[tag]
            out.append(tuple(t.format(w) for w in words for t in _NOUN_TEMPLATES))
        else:
            out.append(tuple(t.format(w) for w in BACKGROUND_WORDS[_PLACE_KEYS[tag]] for t in _PLACE_TEMPLATES))
    return out


def prompt_tag_loss(clip: CLIPModel, image_emb: Tensor, tags: Tensor, bias: Tensor,
                    generator: torch.Generator) -> Tensor:
    """Sigmoid loss of every image against one short prompt per tag (Zhai et al. 2023's pairwise
    sigmoid, with the scene tags as the pairs' labels).

    The contrastive loss only ranks captions within an image's batch, which leaves each image's
    cosine to *any* short prompt free (a per-image offset); here ``exp(t) * cos + bias`` must be
    positive for the tags an image has and negative for the rest, one threshold for all images, so
    a prompt's raw cosine ranks images as well as CLIP's softmax over prompts does.

    Args:
        image_emb: ``(B, E)``. tags: ``(B, A)`` multi-hot over :data:`ATTRIBUTES`.
        bias: scalar, learnable (not part of the shipped model).
    """
    phrases = tag_phrases()
    picks = torch.randint(10_000, (len(phrases),), generator=generator)
    prompts = [options[int(k) % len(options)] for options, k in zip(phrases, picks)]
    text = F.normalize(clip.encode_text(clip.tokenize(prompts)), dim=-1)
    cosine = F.normalize(image_emb, dim=-1) @ text.T
    logits = clip.model.logit_scale.exp() * cosine + bias
    return F.binary_cross_entropy_with_logits(logits, tags.to(logits.device))


def locked_clip_loss(clip: CLIPModel, pool: RenderedPool, views: list[Tensor], generator: torch.Generator,
                     prompt_weight: float = 0.0, bias: Tensor | None = None,
                     cutouts: list[tuple[Tensor, Tensor]] | None = None):
    """The step loss of locked-image tuning: the image side is a precomputed pooled token per scene
    and view (``views``: each ``(N, width)``, see :func:`.lit.pooled_features`), one view drawn per
    scene from ``generator``, through the trainable ``visual.proj``; the text side as :func:`clip_loss`;
    plus ``prompt_weight`` times :func:`prompt_tag_loss` (with the learnable ``bias``), over the batch's
    scenes and, when given, their ``cutouts`` (``(features (N, width), tags (N, A))`` pairs, e.g. the
    two views of :func:`.lit.cutout_views`: they enter the tag loss only, having no captions)."""
    if prompt_weight > 0 and bias is None:
        raise ValueError("locked_clip_loss: prompt_weight > 0 needs the learnable bias")
    if cutouts and not prompt_weight > 0:
        raise ValueError("locked_clip_loss: cut-out views are trained through the tag loss: set prompt_weight > 0")

    def step_loss(idx: Tensor, epoch: int, images: Tensor | None) -> Tensor:
        captions = [pool.captions[i][epoch % len(pool.captions[i])] for i in idx.tolist()]
        pick = torch.randint(len(views), (idx.shape[0],), generator=generator)
        pooled = torch.stack([views[int(v)][int(i)] for v, i in zip(pick, idx)])
        proj = clip.model.visual.proj
        image_emb = pooled.to(proj.device) @ proj
        loss = contrastive_loss(image_emb, clip.encode_text(clip.tokenize(captions)), clip.model.logit_scale)
        if prompt_weight > 0:
            embs, tags = [image_emb], [pool.attributes[idx]]
            for features, cut_tags in cutouts or ():
                embs.append(features[idx].to(proj.device) @ proj)
                tags.append(cut_tags[idx])
            loss = loss + prompt_weight * prompt_tag_loss(clip, torch.cat(embs), torch.cat(tags), bias, generator)
        return loss
    return step_loss


def clamp_logit_scale(clip: CLIPModel) -> None:
    """Keep the temperature above 1/100, as open_clip's training loop does after each step."""
    with torch.no_grad():
        clip.model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)


WATER_CONTRAST = ("a photo of grass.", "a photo of sand.")
"""The other grounds of the world: ``"a photo of water."`` is scored against them."""


def evaluate_clip(clip: CLIPModel, pool: RenderedPool) -> dict[str, object]:
    """Zero-shot AP per class, their mean, and the AP for water over the scenes of ``pool``.

    The headline scores are CLIP's own zero-shot classifier (Radford et al. 2021): per image, a
    softmax at the model's learned temperature over the prompts ``"a photo of a {class}."`` of the
    five classes, each class's probability ranked over the images (``mAP_classes``); and for water
    the probability of ``"a photo of water."`` against the world's other grounds
    (:data:`WATER_CONTRAST`; ``AP_water``). The raw cosine of each prompt on its own is reported
    beside (``mAP_classes_cosine``, ``AP_water_cosine``): it carries a per-image offset (how close an
    image is to any short prompt) that the softmax cancels, and methods that read raw similarities
    (CLIMS's losses) see that offset.
    """
    prompts = [*CLASS_PROMPTS, WATER_PROMPT, *WATER_CONTRAST]
    k = len(CLASS_NAMES)
    cosine = zero_shot_scores(clip, pool.images, prompts)
    scale = clip.model.logit_scale.detach().exp().to(cosine.device)
    probs = (scale * cosine[:, :k]).softmax(dim=1)
    water_prob = (scale * cosine[:, k:]).softmax(dim=1)[:, 0]
    ap = average_precision(probs, pool.classes)
    ap_cos = average_precision(cosine[:, :k], pool.classes)
    water = float(average_precision(water_prob, pool.water)[0])
    water_cos = float(average_precision(cosine[:, k], pool.water)[0])
    return {"images": len(pool), "prompts": prompts,
            "mAP_classes": round(float(ap[~ap.isnan()].mean()), 4),
            "AP": {c: round(float(v), 4) for c, v in zip(CLASS_NAMES, ap)}, "AP_water": round(water, 4),
            "mAP_classes_cosine": round(float(ap_cos[~ap_cos.isnan()].mean()), 4),
            "AP_water_cosine": round(water_cos, 4),
            "logit_scale": round(float(scale), 3)}
