"""CLIMS's training objective (Xie et al., CVPR 2022; POLE's Eq. 5 plus the two CLIMS terms POLE keeps).

For every *present* (image ``b``, class ``k``) pair of a batch — ``N`` pairs in all — the CAM
``P = cams[b, k]`` masks the image ``X`` (both resized to CLIP's input size, bilinear,
``align_corners=True``; ``X`` ImageNet-normalised, as in the official code) into a foreground
image ``P·X`` and a background image ``(1 − P)·X``. The frozen CLIP image encoder gives their
embeddings ``v_fg``, ``v_bg``; ``t_k`` is the text embedding of class ``k``'s prompt and ``u_m``
those of ``M`` background prompts. ``s`` is the plain cosine similarity (no logit scale).

======  =========================================================================  ============
term    value                                                                      reduction
======  =========================================================================  ============
OTM     ``−log(clamp(s(v_fg, t_k), ε, 1 − ε))`` object–text matching                mean over N
BTM     ``−log(1 − clamp(s(v_bg, t_k), ε, 1 − ε))`` background–text matching       mean over N
CBS     ``Σ_m [s(v_fg, u_m) > τ] · −log(1 − s(v_fg, u_m))`` co-occurring bg        **sum** over N
REG     ``mean(cams)`` over all images, classes and pixels (area regularisation)   mean
======  =========================================================================  ============

``loss = w_otm·OTM + w_btm·BTM + w_cbs·CBS + w_reg·REG`` with ε = 1e-4. Official weights: VOC
(10, 24, 1, 0.2), τ = 0.26; COCO (2, 14, 1.25, 0.2), τ = 0.285.

Reductions, as the official code computes them (POLE's Eq. 5 writes per-image sums over classes):
OTM and BTM average over the batch's present pairs (not per image, then over images); CBS is
*summed* over every present pair and every background prompt above τ, so its scale grows with the
number of pairs in the batch given to one call; REG averages over every class, present or not.
CBS's similarity is clamped at ``1 − ε`` too (the official code does not clamp it; the values
differ only for ``s > 1 − ε``, where the official loss is infinite). A batch without present
classes gives OTM = BTM = CBS = 0 (the official code fails on it).

POLE's adapters (``image_adapter``, ``text_adapter``) act on the embeddings before the L2
normalisation of OTM and BTM only; CBS uses the unadapted embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import wsss_kit

if TYPE_CHECKING:
    from wsss_kit.clip import CLIPModel

__all__ = [
    "CLIMSInputs",
    "CLIMSLoss",
    "DEFAULT_EPS",
    "IMAGE_NORMALIZATIONS",
    "area_regularization_loss",
    "background_suppression_loss",
    "background_text_matching_loss",
    "clims_loss",
    "clims_matching_terms",
    "clims_masked_inputs",
    "object_text_matching_loss",
]

DEFAULT_EPS = 1e-4
"""The clamp of the similarities, ``[ε, 1 − ε]`` (official: 0.0001, 0.9999)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_NORMALIZATIONS = ("imagenet", "clip", "none")
"""How images in [0, 1] are normalised before masking: ``imagenet`` (official: the CAM network's
input), ``clip`` (the CLIP model's own mean/std), ``none`` (the images are already normalised)."""

Adapter = Callable[[Tensor], Tensor]


class CLIMSInputs(NamedTuple):
    """The CLIP inputs of the present (image, class) pairs, in ``labels.nonzero()`` order.

    Attributes:
        foreground: ``(N, 3, S, S)``, ``P·X``.
        background: ``(N, 3, S, S)``, ``(1 − P)·X``.
        image_index: ``(N,)`` int64, the pair's image ``b``.
        class_index: ``(N,)`` int64, the pair's class ``k``.
    """

    foreground: Tensor
    background: Tensor
    image_index: Tensor
    class_index: Tensor


# ---------------------------------------------------------------------------- the single terms
def object_text_matching_loss(similarity: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """L_OTM = mean over pairs of ``−log(clamp(s, ε, 1 − ε))`` (CLIMS; first term of POLE's Eq. 5).

    Args:
        similarity: ``(N,)`` cosine similarities of foreground images and their class texts.

    Returns:
        a scalar; 0 (connected to ``similarity``) when ``N = 0``.
    """
    _check_similarity(similarity, 1, "object_text_matching_loss")
    if similarity.numel() == 0:
        return similarity.sum() * 0
    return -torch.log(similarity.clamp(eps, 1 - eps)).mean()


def background_text_matching_loss(similarity: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """L_BTM = mean over pairs of ``−log(1 − clamp(s, ε, 1 − ε))`` (second term of POLE's Eq. 5).

    Args:
        similarity: ``(N,)`` cosine similarities of background images and their class texts.
    """
    _check_similarity(similarity, 1, "background_text_matching_loss")
    if similarity.numel() == 0:
        return similarity.sum() * 0
    return -torch.log(1 - similarity.clamp(eps, 1 - eps)).mean()


def background_suppression_loss(similarity: Tensor, threshold: float = 0.26, eps: float = DEFAULT_EPS) -> Tensor:
    """L_CBS = **sum** over pairs ``n`` and background prompts ``m`` with ``s[n, m] > threshold`` of
    ``−log(1 − min(s[n, m], 1 − ε))`` (CLIMS's co-occurring background suppression).

    Args:
        similarity: ``(N, M)`` cosine similarities of the foreground images and the background
            prompts' texts.
        threshold: τ; official 0.26 (VOC), 0.285 (COCO). The selection carries no gradient.

    Returns:
        a scalar, summed (not averaged) as in the official code; 0 when nothing exceeds τ.
    """
    _check_similarity(similarity, 2, "background_suppression_loss")
    terms = -torch.log(1 - similarity.clamp(max=1 - eps))
    return torch.where(similarity > threshold, terms, torch.zeros_like(terms)).sum()


def area_regularization_loss(cams: Tensor) -> Tensor:
    """L_REG = the mean of the CAMs over every image, class (present or not) and pixel (CLIMS).

    Args:
        cams: ``(B, C, h, w)`` in [0, 1] (the sigmoid CAMs at feature resolution).
    """
    if not isinstance(cams, Tensor) or cams.dim() != 4:
        raise ValueError(f"cams must be a (B, C, h, w) tensor; got {describe_value(cams)}")
    return cams.mean()


# ---------------------------------------------------------------------------- building blocks
def clims_masked_inputs(images: Tensor, cams: Tensor, labels: Tensor, size: int | Sequence[int]) -> CLIMSInputs:
    """The masked CLIP inputs ``P·X`` and ``(1 − P)·X`` of every present (image, class) pair.

    ``X`` is ``images`` resized to ``size`` and ``P`` the pair's CAM resized to ``size``, both
    bilinear with ``align_corners=True`` (the official code). The CAMs are gathered before resizing
    (the same values as resizing all of them, without the ``B × C`` full-size maps).

    Args:
        images: ``(B, 3, H, W)``, already normalised as CLIP should see them (CLIMS: ImageNet).
        cams: ``(B, C, h, w)`` in [0, 1], any resolution.
        labels: ``(B, C)`` multi-hot; a class is present where ``labels > 0.5``.
        size: ``S`` or ``(S_h, S_w)``, CLIP's input size (224 for ViT-B/32).
    """
    _check_batch(images, cams, labels)
    size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
    image_index, class_index = torch.nonzero(labels > 0.5, as_tuple=True)
    x = F.interpolate(images, size=size, mode="bilinear", align_corners=True)[image_index]
    p = F.interpolate(cams[image_index, class_index].unsqueeze(1), size=size, mode="bilinear", align_corners=True)
    return CLIMSInputs(p * x, (1 - p) * x, image_index, class_index)


def clims_matching_terms(foreground: Tensor, background: Tensor, pair_text: Tensor, background_text: Tensor, *,
                         cbs_threshold: float = 0.26, eps: float = DEFAULT_EPS,
                         image_adapter: Adapter | None = None, text_adapter: Adapter | None = None
                         ) -> dict[str, Tensor]:
    """OTM, BTM and CBS (unweighted) from embeddings: the CLIP-free part of :func:`clims_loss`.

    Args:
        foreground: ``(N, E)`` image embeddings of ``P·X`` (not normalised).
        background: ``(N, E)`` image embeddings of ``(1 − P)·X``.
        pair_text: ``(N, E)`` text embedding of each pair's class prompt.
        background_text: ``(M, E)`` background prompts' text embeddings (``M`` may be 0).
        cbs_threshold: τ of :func:`background_suppression_loss`.
        image_adapter, text_adapter: ``(n, E) → (n, E)`` applied to the image / class-text
            embeddings before normalisation, for OTM and BTM only (POLE).

    Returns:
        ``{"otm", "btm", "cbs"}`` scalars.
    """
    for name, t in (("foreground", foreground), ("background", background), ("pair_text", pair_text),
                    ("background_text", background_text)):
        if not isinstance(t, Tensor) or t.dim() != 2:
            raise ValueError(f"{name} must be an (n, E) tensor of embeddings; got {describe_value(t)}")
    n, e = foreground.shape
    if background.shape != (n, e) or pair_text.shape != (n, e):
        raise ValueError(f"foreground, background and pair_text must share the shape (N, E); got "
                         f"{tuple(foreground.shape)}, {tuple(background.shape)} and {tuple(pair_text.shape)}")
    if background_text.shape[1] != e:
        raise ValueError(f"background_text has width {background_text.shape[1]}, the image embeddings {e}")
    fg_a = image_adapter(foreground) if image_adapter is not None else foreground
    bg_a = image_adapter(background) if image_adapter is not None else background
    text_a = text_adapter(pair_text) if text_adapter is not None else pair_text
    text_a = F.normalize(text_a, dim=-1)
    s_fg = (F.normalize(fg_a, dim=-1) * text_a).sum(-1)
    s_bg = (F.normalize(bg_a, dim=-1) * text_a).sum(-1)
    s_cbs = F.normalize(foreground, dim=-1) @ F.normalize(background_text, dim=-1).t()
    return {
        "otm": object_text_matching_loss(s_fg, eps),
        "btm": background_text_matching_loss(s_bg, eps),
        "cbs": background_suppression_loss(s_cbs, cbs_threshold, eps),
    }


# ---------------------------------------------------------------------------- the whole loss
def clims_loss(images: Tensor, cams: Tensor, labels: Tensor, *, clip: CLIPModel, class_text: Tensor,
               background_text: Tensor | Sequence[str], otm_weight: float = 10.0, btm_weight: float = 24.0,
               cbs_weight: float = 1.0, reg_weight: float = 0.2, cbs_threshold: float = 0.26,
               input_size: int | Sequence[int] | None = None,
               normalization: str | tuple[Sequence[float], Sequence[float]] = "imagenet",
               eps: float = DEFAULT_EPS, image_adapter: Adapter | None = None,
               text_adapter: Adapter | None = None) -> dict[str, Tensor]:
    """The CLIMS training loss of a batch (see the module docstring for the terms and reductions).

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1] (or already normalised with ``normalization="none"``).
        cams: ``(B, C, h, w)`` in [0, 1], the sigmoid CAMs at feature resolution (gradients flow).
        labels: ``(B, C)`` multi-hot.
        clip: a frozen :class:`wsss_kit.clip.CLIPModel`; the masked images go through its image
            encoder as they are (``encode_image(..., normalized=True)``).
        class_text: ``(C, E)`` text embeddings of the class prompts (e.g. a prompt strategy's output),
            or ``(B, C, E)`` per image (POLE's selected synonyms); each pair uses its own row.
        background_text: ``(M, E)`` embeddings, or prompt strings (encoded with ``clip.encode_text``,
            cached for a frozen model).
        otm_weight, btm_weight, cbs_weight, reg_weight: official VOC 10, 24, 1, 0.2 (COCO 2, 14, 1.25, 0.2).
        cbs_threshold: τ, official 0.26 (VOC), 0.285 (COCO).
        input_size: CLIP's input size; ``None`` = the model's native size (224 for ViT-B/32).
        normalization: ``"imagenet"`` (official), ``"clip"`` (the CLIP model's own mean/std),
            ``"none"`` or ``(mean, std)``; applied to ``images`` before masking.
        eps: ε of the clamps.
        image_adapter, text_adapter: POLE's adapters, see :func:`clims_matching_terms`.

    Returns:
        ``{"loss", "otm", "btm", "cbs", "reg"}`` scalars; ``loss`` is the weighted sum.
    """
    from wsss_kit.clip import CLIPModel

    if not isinstance(clip, CLIPModel):
        raise TypeError(f"clims_loss needs clip=wsss_kit.clip.CLIPModel (load_clip(...)); got {describe_value(clip)}")
    _check_batch(images, cams, labels)
    b, c = cams.shape[:2]
    if not isinstance(class_text, Tensor) or not (
            (class_text.dim() == 2 and class_text.shape[0] == c)
            or (class_text.dim() == 3 and tuple(class_text.shape[:2]) == (b, c))):
        raise ValueError(f"class_text must be (C, E) or per image (B, C, E) with B = {b}, C = {c} (one row per CAM "
                         f"channel); got {describe_value(class_text)}")
    if not isinstance(background_text, Tensor):
        prompts = [str(p) for p in background_text]
        background_text = clip.encode_text(prompts) if prompts else class_text.new_zeros(0, class_text.shape[-1])
    x = _normalize(images, normalization, clip)
    size = input_size if input_size is not None else clip.image_size
    inputs = clims_masked_inputs(x, cams, labels, size)
    n = inputs.foreground.shape[0]
    if n:
        feats = clip.encode_image(torch.cat([inputs.foreground, inputs.background]), normalized=True)
        fg, bg = feats[:n], feats[n:]
    else:
        fg = bg = cams.new_zeros(0, class_text.shape[-1])
    index = inputs.class_index.to(class_text.device)
    if class_text.dim() == 2:
        pair_text = class_text[index]
    else:
        pair_text = class_text[inputs.image_index.to(class_text.device), index]
    terms = clims_matching_terms(fg, bg, pair_text.to(fg.device),
                                 background_text.to(fg.device), cbs_threshold=cbs_threshold, eps=eps,
                                 image_adapter=image_adapter, text_adapter=text_adapter)
    if not n:  # keep the graph connected to the CAMs (DDP expects every trainable parameter used)
        terms = {k: v + cams.sum() * 0 for k, v in terms.items()}
    terms["reg"] = area_regularization_loss(cams)
    loss = (otm_weight * terms["otm"] + btm_weight * terms["btm"] + cbs_weight * terms["cbs"]
            + reg_weight * terms["reg"])
    return {"loss": loss, **terms}


class CLIMSLoss(wsss_kit.Loss):
    """CLIMS's loss (:func:`clims_loss`) with its hyper-parameters; the CLIP model is passed in, not owned.

    Args:
        otm_weight, btm_weight, cbs_weight, reg_weight: term weights (official VOC 10, 24, 1, 0.2;
            COCO 2, 14, 1.25, 0.2).
        cbs_threshold: τ of the background suppression (VOC 0.26, COCO 0.285).
        input_size: CLIP's input size; ``None`` = the CLIP model's native size (224 for ViT-B/32).
        normalization: ``"imagenet"`` (official), ``"clip"``, ``"none"`` or ``(mean, std)``.
        eps: ε of the similarity clamps (1e-4).
        preset: ``"voc"`` or ``"coco"`` sets the four weights and τ first; explicit keywords win.

    ``forward(images, cams, labels, *, clip, class_text, background_text, image_adapter=None,
    text_adapter=None)`` takes images ``(B, 3, H, W)`` in [0, 1], CAMs ``(B, C, h, w)`` in [0, 1],
    labels ``(B, C)``, class texts ``(C, E)`` or ``(B, C, E)`` and background texts ``(M, E)`` or
    strings, and returns ``{"loss", "otm", "btm", "cbs", "reg"}``.
    """

    wsss_api_version = "1.0"

    def __init__(self, otm_weight: float | None = None, btm_weight: float | None = None,
                 cbs_weight: float | None = None, reg_weight: float | None = None,
                 cbs_threshold: float | None = None, input_size: int | Sequence[int] | None = None,
                 normalization: str | tuple[Sequence[float], Sequence[float]] = "imagenet",
                 eps: float = DEFAULT_EPS, preset: str = "voc") -> None:
        super().__init__()
        from .presets import clims_loss_preset

        values = clims_loss_preset(preset)
        given = {"otm_weight": otm_weight, "btm_weight": btm_weight, "cbs_weight": cbs_weight,
                 "reg_weight": reg_weight, "cbs_threshold": cbs_threshold}
        values.update({k: float(v) for k, v in given.items() if v is not None})
        for name, value in values.items():
            if name.endswith("_weight") and not value >= 0:
                raise ValueError(f"{name} must be >= 0; got {value!r}")
        if not 0 < eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5); got {eps!r}")
        _check_normalization(normalization)
        self.otm_weight = values["otm_weight"]
        self.btm_weight = values["btm_weight"]
        self.cbs_weight = values["cbs_weight"]
        self.reg_weight = values["reg_weight"]
        self.cbs_threshold = values["cbs_threshold"]
        self.input_size = input_size
        self.normalization = normalization
        self.eps = float(eps)
        self.preset = preset

    def forward(self, images: Tensor, cams: Tensor, labels: Tensor, *, clip: CLIPModel, class_text: Tensor,
                background_text: Tensor | Sequence[str], image_adapter: Adapter | None = None,
                text_adapter: Adapter | None = None) -> dict[str, Tensor]:
        """See :func:`clims_loss`."""
        return clims_loss(images, cams, labels, clip=clip, class_text=class_text, background_text=background_text,
                          otm_weight=self.otm_weight, btm_weight=self.btm_weight, cbs_weight=self.cbs_weight,
                          reg_weight=self.reg_weight, cbs_threshold=self.cbs_threshold,
                          input_size=self.input_size, normalization=self.normalization, eps=self.eps,
                          image_adapter=image_adapter, text_adapter=text_adapter)

    def extra_repr(self) -> str:
        return (f"weights(otm, btm, cbs, reg)=({self.otm_weight:g}, {self.btm_weight:g}, {self.cbs_weight:g}, "
                f"{self.reg_weight:g}), cbs_threshold={self.cbs_threshold:g}, input_size={self.input_size}, "
                f"normalization={self.normalization!r}")


# ---------------------------------------------------------------------------- helpers
def _normalize(images: Tensor, normalization: str | tuple[Sequence[float], Sequence[float]],
               clip: CLIPModel) -> Tensor:
    _check_normalization(normalization)
    if normalization == "none":
        return images
    mean: Sequence[float]
    std: Sequence[float]
    if normalization == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif normalization == "clip":
        return (images - clip.mean.to(images.device)) / clip.std.to(images.device)
    else:
        assert not isinstance(normalization, str)  # _check_normalization lets no other name through
        mean, std = normalization
    mean_t = images.new_tensor(list(mean)).view(1, 3, 1, 1)
    std_t = images.new_tensor(list(std)).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def _check_normalization(normalization: Any) -> None:
    if isinstance(normalization, str):
        if normalization not in IMAGE_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(IMAGE_NORMALIZATIONS)} or (mean, std); "
                             f"got {normalization!r}")
        return
    try:
        mean, std = normalization
        ok = len(mean) == 3 and len(std) == 3 and all(float(s) > 0 for s in std)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"normalization must be one of {', '.join(IMAGE_NORMALIZATIONS)} or (mean, std) with "
                         f"3 values each and positive std; got {normalization!r}")


def _check_similarity(similarity: object, dims: int, who: str) -> None:
    if not isinstance(similarity, Tensor) or similarity.dim() != dims:
        shape = "(N,)" if dims == 1 else "(N, M)"
        raise ValueError(f"{who}: similarity must be a {shape} tensor; got {describe_value(similarity)}")


def _check_batch(images: object, cams: object, labels: object) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) tensor; got {describe_value(images)}")
    if not isinstance(cams, Tensor) or cams.dim() != 4:
        raise ValueError(f"cams must be a (B, C, h, w) tensor; got {describe_value(cams)}")
    if not isinstance(labels, Tensor) or labels.dim() != 2:
        raise ValueError(f"labels must be a (B, C) multi-hot tensor; got {describe_value(labels)}")
    b, c = cams.shape[:2]
    if images.shape[0] != b or tuple(labels.shape) != (b, c):
        raise ValueError(f"batch mismatch: images {tuple(images.shape)}, cams {tuple(cams.shape)} and labels "
                         f"{tuple(labels.shape)}; expected images (B, 3, H, W), cams (B, C, h, w), labels (B, C)")


def describe_value(value: object) -> str:
    """``"a tensor of shape (...)"`` or the type's name: what an error message says it got."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__
