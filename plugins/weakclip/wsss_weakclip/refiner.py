"""``refiners/weakclip``: WeakCLIP as a trainable refiner — seeds in, pseudo masks out.

::

    refiner = wsss_kit.create("refiners", "weakclip", class_names=VOC_CLASSES, preset="official")
    out = refiner.training_step({"image": images, "target": seeds, "labels": labels})   # {"loss", ...}
    probs = refiner.refine(images, seeds, labels)        # (B, C+1, H, W), official inference + CRF

In a pipeline the ``train_refiner`` stage trains it on the train seeds (``refiner_train``,
``refiner_augment``) and ``pseudo_masks`` loads ``train_refiner/model.pt``; the pipeline gives
it the dataset's class names. Training (paper Sec. 3.3.5, official weights): ``1 · balanced seeding
+ 1 · CRF boundary + 0.4 · score-map cross-entropy``. Inference (:mod:`wsss_weakclip.inference`):
scales 0.5–1.75 of ``(2048, 512)`` + flip, sliding windows 512 / 341, averaged softmax, dense CRF
over the classes present in the argmax; with ``restrict_to_labels`` (the ``paper`` preset, Eq. 14)
pixels whose class is not in the image label become 255.
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import wsss_kit
from wsss_kit import IGNORE_INDEX
from wsss_kit.clip.preprocessing import normalization_stats
from wsss_kit.crf import check_workers, get_params, resolve_backend
from wsss_kit.data import COCO_CLASSES, VOC_CLASSES
from wsss_kit.errors import WeightsError
from wsss_kit.input_space import to_unit
from wsss_kit.weights import load_checkpoint, load_weights_into

from .convert import is_official_layout, official_state_for
from .inference import OFFICIAL_SCALES, crf_over_predicted_classes, multiscale_softmax, restrict_to_labels
from .losses import CRF_IMAGES, balanced_seed_loss, crf_boundary_loss, score_map_loss
from .model import WeakCLIPNet
from .official_clip import carries_clip
from .presets import OFFICIAL
from .refiner_checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_PURPOSE,
    UNRECORDED,
    ClassNamesError,
    choose_clip,
    class_names_mismatch,
    read_checkpoint,
)
from .window_budget import WindowBudget

__all__ = ["DATASET_CLASSES", "REFINER_PRESETS", "ClassNamesError", "WeakCLIPRefiner", "check_seed_batch"]

DATASET_CLASSES: dict[str, tuple[str, ...]] = {"voc": tuple(VOC_CLASSES), "coco": tuple(COCO_CLASSES)}
"""Foreground class names by dataset, for ``dataset=`` (the raw names the official code feeds CLIP)."""

REFINER_PRESETS: dict[str, dict[str, Any]] = {"paper": {"restrict_to_labels": True, "loss_crf_image": "rounded"}}
"""Refiner settings that follow the network preset (every other preset: ``restrict_to_labels=False``,
the official code, which has no such step, and ``loss_crf_image="official"``, the official code's
boundary-loss CRF image bit for bit)."""

_REFINER_DEFAULTS: dict[str, Any] = {"restrict_to_labels": False, "loss_crf_image": "official"}



def check_seed_batch(seeds: Tensor, images: Tensor, labels: Tensor | None = None,
                     names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Validate training seeds ``(B, H, W)`` against ``images`` ``(B, 3, H, W)`` and ``labels`` ``(B, C)``.

    Raises:
        ValueError: naming the image (``names[i]`` when given, else its batch index) whose seed mask
            has another size than the image, or holds a class id outside ``0..C`` or a class
            that the image's labels do not have.
    """
    def who(i: int) -> str:
        return f"image {names[i]!r}" if names is not None and i < len(names) else f"image {i} of the batch"

    if not isinstance(seeds, Tensor) or seeds.is_floating_point() or seeds.dim() != 3:
        got = f"{seeds.dtype} {tuple(seeds.shape)}" if isinstance(seeds, Tensor) else type(seeds).__name__
        raise ValueError(f"seeds must be an integer (B, H, W) tensor, got {got}")
    if seeds.shape[0] != images.shape[0]:
        raise ValueError(f"{seeds.shape[0]} seed masks for {images.shape[0]} images")
    if tuple(seeds.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(f"the seed masks are {seeds.shape[-2]}x{seeds.shape[-1]} but the images are "
                         f"{images.shape[-2]}x{images.shape[-1]} ({who(0)} and the rest of the batch)")
    seeds = seeds.long()
    if labels is None:
        return seeds
    c = labels.shape[1]
    allowed = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1).to(seeds.device) > 0.5
    for i in range(seeds.shape[0]):
        values = torch.unique(seeds[i])
        values = values[values != ignore_index]
        out = values[(values < 0) | (values > c)]
        if out.numel():
            raise ValueError(f"seed mask of {who(i)} holds values {out.tolist()} outside 0..{c} and {ignore_index}")
        stray = [int(v) for v in values if not bool(allowed[i, v])]
        if stray:
            raise ValueError(f"seed mask of {who(i)} has class(es) {stray} that its labels do not have "
                             f"(labels: {[int(k) for k in allowed[i].nonzero().flatten().tolist() if k]})")
    return seeds


class WeakCLIPRefiner(wsss_kit.Refiner, nn.Module):
    """WeakCLIP (Zhu et al., IJCV 2024) as a trainable refiner; wraps :class:`~wsss_weakclip.WeakCLIPNet`.

    Args:
        class_names: the ``C`` foreground class names (background excluded, dataset order; the
            pipeline passes ``data.train``'s); ``background_name`` is put first, so the network
            has ``K = C + 1`` classes.
        num_classes: ``C``; with ``class_names`` a check, without it ``dataset``'s names are used.
        dataset: ``"voc"`` or ``"coco"``: the names when ``class_names`` is not given.
        background_name: the name of class 0 given to the text encoder (official ``"background"``).
        preset: network preset (``official``, ``paper``, ``table4_*``, ``table5_n*``,
            ``table8_init*``; :mod:`wsss_weakclip.presets`); ``paper`` also turns
            ``restrict_to_labels`` on.
        clip_model, clip_weights: the frozen CLIP (``"ViT-B-16"`` with OpenAI's weights officially;
            ``"wsss-tiny-clip"`` with ``None`` for tests). With a ``checkpoint`` and ``clip_weights``
            ``None`` or ``"default"``, an official checkpoint's own CLIP tensors are used (no CLIP
            file needed); with ``None`` a refiner checkpoint's recorded ``clip_weights`` are used.
        checkpoint: weights to load (a refiner checkpoint, a ``WeakCLIPNet`` state dict or an
            official WeakCLIP checkpoint); class names must match. When a CLIP file is given too,
            the CLIP tensors an official checkpoint carries must equal it: else a ``WeightsError``
            names both files and the first differing tensors.
        seed_loss_weight, boundary_loss_weight, score_map_loss_weight: loss weights (1, 1, 0.4).
        loss_size: side of the seeding/boundary loss grid (64).
        loss_crf: CRF parameters of the boundary loss (``weakclip_loss``: 3/3, 80/13/10, 10 iterations).
        loss_crf_workers: processes for the boundary-loss CRFs (``"auto"``, an int, 0 = in process).
        loss_crf_image: the boundary-loss CRF image (:func:`~wsss_weakclip.losses.images_for_crf`):
            ``"official"`` (the official code's, bit-equal: the normalised image resized,
            un-normalised, truncated) or ``"rounded"`` (the [0, 1] image resized and rounded);
            ``None``: from the preset (``rounded`` for ``paper``, else ``official``).
        input_space: ``"unit"`` (images in [0, 1], the default) or ``"normalized"`` (images already
            normalised with CLIP's mean/std, ImageNet's officially, as the official data loaders
            give them) for training, :meth:`refine` and :meth:`probabilities`.
        scales, base_size, flip: test ratios of the ``(2048, 512)`` image scale (``None``: of the
            image itself) and horizontal flip.
        window, stride: sliding windows (512 / 341).
        window_memory_mb: memory budget of one network call's windows: ``"auto"`` (CPU: one window
            at a time, the official code's peak, nothing measured; CUDA: 80% of the free memory)
            or megabytes; the windows per call follow from one measured window per window size
            (:class:`~wsss_weakclip.window_budget.WindowBudget`).
        window_batch: at most this many windows per network call (``None``: as the budget allows).
        crf: CRF of the pseudo masks (``"weakclip_voc"``, ``"weakclip_coco"``, a mapping, or
            ``None`` for none), over the classes present in the argmax.
        crf_workers: CRF processes at inference (``None``: the run's ``threads.crf_workers``, 0 = in process).
        crf_backend: dense-CRF backend of the boundary loss and the pseudo masks: ``"pydensecrf"``
            (the reference, worker processes), ``"torch"`` (batched on the tensors' device, see
            :func:`wsss_kit.crf.dense_crf_torch`) or ``"auto"`` (torch on CUDA, else pydensecrf).
        restrict_to_labels: return masks with 255 where the class is not in the image label (Eq. 14);
            ``None``: from the preset (on for ``paper``).
        **network: any :class:`~wsss_weakclip.WeakCLIPNet` setting (``n_context``,
            ``residual_init``, ``clip_precision``, ...; :data:`wsss_weakclip.presets.OFFICIAL`).
    """

    wsss_api_version = "1.0"
    trainable = True

    @staticmethod
    def checkpoint_provides(checkpoint: Any) -> tuple[str, ...]:
        """The keywords whose files ``checkpoint`` makes optional: ``("clip_weights",)`` for an official
        WeakCLIP checkpoint, which carries its CLIP (a CLIP file given too is compared with it), else
        ``()``; also ``()`` when the checkpoint is not here (nothing can be known). Read by
        ``wsss weights``; not in ``checkpoint_replaces``: a run's own ``model.pt`` holds no CLIP."""
        try:
            state, _ = read_checkpoint(checkpoint)
        except WeightsError:
            return ()
        return ("clip_weights",) if carries_clip(state) else ()
    # No ``checkpoint_replaces``: only an official checkpoint carries CLIP. The pipeline builds a
    # refiner for its own train_refiner/model.pt with the replaced keywords set to None, which here
    # would mean a random CLIP; instead clip_weights="default" (or None) defers to a given
    # checkpoint's CLIP when it carries one (see refiner_checkpoint).

    def __init__(self, class_names: Sequence[str] | None = None, num_classes: int | None = None,
                 dataset: str | None = None, background_name: str = "background", preset: str = "official",
                 clip_model: str = "ViT-B-16", clip_weights: str | os.PathLike[str] | None = "default",
                 checkpoint: str | os.PathLike[str] | None = None,
                 seed_loss_weight: float = 1.0, boundary_loss_weight: float = 1.0, score_map_loss_weight: float = 0.4,
                 loss_size: int = 64, loss_crf: Any = "weakclip_loss", loss_crf_workers: int | str | None = "auto",
                 loss_crf_image: str | None = None, input_space: str = "unit",
                 scales: Sequence[float] = OFFICIAL_SCALES, base_size: Sequence[int] | None = (2048, 512),
                 flip: bool = True, window: int = 512, stride: int = 341, window_memory_mb: float | str = "auto",
                 window_batch: int | None = None,
                 crf: Any = "weakclip_voc", crf_workers: int | None = None, restrict_to_labels: bool | None = None,
                 crf_backend: str = "pydensecrf", **network: Any) -> None:
        nn.Module.__init__(self)
        resolve_backend(crf_backend)  # an unknown name fails before the network is built
        self.window_budget = WindowBudget(window_memory_mb, window_batch)  # bad values fail here too
        names = self._class_names(class_names, num_classes, dataset, background_name)
        defaults = {**_REFINER_DEFAULTS, **REFINER_PRESETS.get(preset if isinstance(preset, str) else "", {})}
        self.loss_crf_image = defaults["loss_crf_image"] if loss_crf_image is None else loss_crf_image
        if self.loss_crf_image not in CRF_IMAGES:
            raise ValueError(f"loss_crf_image must be one of {', '.join(map(repr, CRF_IMAGES))} or None (from the "
                             f"preset), got {loss_crf_image!r}")
        # No CLIP given: the checkpoint decides (read once, here, before the network exists).
        clip = choose_clip(clip_model, clip_weights, checkpoint, preset, network)
        self._clip_record = clip.record
        self.net = WeakCLIPNet(names, clip_model=clip.clip_model, clip_weights=clip.clip_weights, preset=preset,
                               input_space=input_space, **network)
        self.preset = preset
        self.trainable = bool(self.net.trainable_parameters())  # e.g. table4_direct_clip has nothing to learn
        self.loss_weights = {"seed": float(seed_loss_weight), "boundary": float(boundary_loss_weight),
                             "score_map": float(score_map_loss_weight)}
        if any(w < 0 for w in self.loss_weights.values()) or not any(self.loss_weights.values()):
            raise ValueError(f"loss weights must be >= 0 and not all 0, got {self.loss_weights}")
        self.loss_size, self.loss_crf, self.loss_crf_workers = int(loss_size), get_params(loss_crf), loss_crf_workers
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or any(not s > 0 for s in self.scales):
            raise ValueError(f"scales must be positive ratios, got {list(scales)}")
        self.base_size = None if base_size is None else tuple(int(s) for s in base_size)
        self.flip, self.window, self.stride = bool(flip), int(window), int(stride)
        if self.window < 1 or self.stride < 1 or self.stride > self.window:
            raise ValueError(f"need 1 <= stride <= window, got window={window}, stride={stride}")
        self.crf = None if crf is None else get_params(crf)
        self.crf_workers = check_workers(crf_workers, "crf_workers")  # a typo fails here, not after training
        self.crf_backend = crf_backend
        if restrict_to_labels is None:
            restrict_to_labels = defaults["restrict_to_labels"]
        self.restrict_to_labels = bool(restrict_to_labels)
        if clip.state is not None:
            # a CLIP built from this very state needs no comparison with it (ViT-B/16: ~150M values)
            check = "off" if clip.clip_weights is None and clip.record is UNRECORDED else "error"
            load_weights_into(self, self._refiner_state(clip.state, clip.source, clip_check=check), source=clip.source)
            self.net.clear_text_cache()
        elif checkpoint is not None:
            self.load_weights(checkpoint)

    @staticmethod
    def _class_names(class_names: Sequence[str] | None, num_classes: int | None, dataset: str | None,
                     background_name: str) -> tuple[str, ...]:
        if class_names is None:
            if dataset is None:
                raise ValueError("the WeakCLIP refiner needs the class names (its text prompts are built from "
                                 "them): pass class_names=[...] (the C foreground names) or dataset='voc'/'coco'")
            if dataset not in DATASET_CLASSES:
                raise ValueError(f"dataset must be one of {', '.join(DATASET_CLASSES)}, got {dataset!r}")
            class_names = DATASET_CLASSES[dataset]
        if isinstance(class_names, str):
            raise ValueError(f"class_names must be a list of names, got the string {class_names!r}")
        names = tuple(str(n) for n in class_names)
        if background_name in names:
            raise ValueError(f"class_names are the C foreground classes; {background_name!r} is added as class 0, "
                             f"so leave it out (got {list(names)})")
        if num_classes is not None and int(num_classes) != len(names):
            raise ValueError(f"class_names has {len(names)} names but num_classes={num_classes}")
        if not names:
            raise ValueError("class_names is empty")
        return (str(background_name),) + names

    # ------------------------------------------------------------------ properties and state
    @property
    def class_names(self) -> tuple[str, ...]:
        """The ``K`` class names, background first."""
        return self.net.class_names

    @property
    def num_classes(self) -> int:
        """``C``, the foreground classes."""
        return len(self.class_names) - 1

    @property
    def input_space(self) -> str:
        """``"unit"`` or ``"normalized"``: what the images given to this refiner are."""
        return self.net.input_space

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """CLIP's ``(mean, std)`` in [0, 1] units, as the setting spells them (``clip_normalization``)
        when they are the model's, so that the official CRF image un-normalises with mmseg's exact
        float32 0..255 values; else the model's float32 buffers."""
        clip = self.net.clip
        ours = (tuple(clip.mean.flatten().tolist()), tuple(clip.std.flatten().tolist()))
        try:
            spec = normalization_stats(self.net.settings["clip_normalization"], clip.model)
        except (ValueError, TypeError):
            return ours
        as_float32 = tuple(tuple(torch.tensor(v, dtype=torch.float32).tolist()) for v in spec)
        return spec if as_float32 == ours else ours

    def get_extra_state(self) -> dict[str, Any]:
        """The checkpoint's record: format, class names and (when known) the ``clip_weights`` the CLIP
        came from, which a checkpoint-only build (``clip_weights=None``) uses again."""
        extra: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "class_names": list(self.class_names)}
        if getattr(self, "_clip_record", UNRECORDED) is not UNRECORDED:
            extra["clip_weights"] = self._clip_record
        return extra

    def set_extra_state(self, state: Any) -> None:
        names = list(state.get("class_names") or []) if isinstance(state, Mapping) else []
        if names and names != list(self.class_names):
            raise ClassNamesError(class_names_mismatch("the weights being loaded", names, self.class_names))
        trained = state.get("clip_weights") if isinstance(state, Mapping) else None
        if trained is not None and getattr(self, "_clip_record", UNRECORDED) is None:
            warnings.warn(f"the weights being loaded were trained with the CLIP of clip_weights={trained!r}, but this "
                          f"refiner's CLIP is random (clip_weights=None): pass clip_weights={trained!r}",
                          stacklevel=2)

    def load_weights(self, checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> "WeakCLIPRefiner":
        """Load a refiner checkpoint (``train_refiner/model.pt``), a ``WeakCLIPNet`` state dict or an
        official WeakCLIP checkpoint (file, ``released:`` / ``pypi:`` spec or state dict); returns ``self``.

        A file goes through :func:`wsss_kit.weights.load_checkpoint` (hub tags refused, ``weights_only``
        load, this refiner's converter, strict load). The CLIP tensors an official checkpoint carries
        must be those of this refiner's CLIP (compared tensor by tensor).

        Raises:
            ClassNamesError: (a ``ValueError`` and a ``WeightsError``) the checkpoint was trained for
                other class names (both lists are named).
            WeightsError: the file is missing, unreadable or does not fit the network, or it carries
                other CLIP weights than the refiner's (naming both sources and the first differing tensors).
        """
        if isinstance(checkpoint, Mapping):
            load_weights_into(self, self._refiner_state(dict(checkpoint), "the given state dict"),
                              source="the given state dict")
        else:
            load_checkpoint(self, checkpoint, converter=self._refiner_state, purpose=CHECKPOINT_PURPOSE)
        self.net.clear_text_cache()
        return self

    def _refiner_state(self, state: Mapping[str, Any], source: str = "checkpoint",
                       clip_check: str = "error") -> dict[str, Any]:
        """Any of the three layouts → this refiner's state dict (the converter of :meth:`load_weights`);
        ``clip_check`` compares an official file's CLIP tensors with the refiner's CLIP."""
        state = dict(state.get("state_dict", state)) if isinstance(state.get("state_dict"), Mapping) else dict(state)
        if is_official_layout(state):
            converted = official_state_for(self.net, state, source=source, clip_check=clip_check)
            return {**{f"net.{k}": v for k, v in converted.items()}, "_extra_state": self.get_extra_state()}
        if not any(k.startswith("net.") for k in state):
            state = {f"net.{k}": v for k, v in state.items()}
        for key in ("_extra_state", "net.prompt._extra_state"):  # the refiner's and the learnable prompt's record
            extra = state.get(key)
            names = extra.get("class_names") if isinstance(extra, Mapping) else None
            if names is not None and list(names) != list(self.class_names):
                raise ClassNamesError(class_names_mismatch(source, list(names), self.class_names))
        state.setdefault("_extra_state", self.get_extra_state())
        return state

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The network: ``images`` ``(B, 3, H, W)`` (in [0, 1], or normalised with ``input_space="normalized"``)
        → ``{"logits", "score_map"}``."""
        return self.net(images)

    def param_groups(self, lr: float, **options: Any) -> list[dict[str, Any]]:
        """The network's optimiser groups (prompt, adapter when trained, matching, decoder)."""
        return self.net.param_groups(lr, **options)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Forward + losses on ``batch["image"]`` ``(B, 3, H, W)`` with ``batch["target"]`` seeds
        ``(B, H, W)`` (255 = ignore); ``batch["labels"]`` ``(B, C)`` and ``batch["name"]``, when
        present, check the seeds and name a bad image.

        Returns ``{"loss", "seed", "boundary", "score_map"}`` (terms with weight 0 are not computed).
        """
        images = batch["image"]
        labels = batch.get("labels")
        names = batch.get("name")
        seeds = check_seed_batch(batch["target"], images, None if labels is None else torch.as_tensor(labels),
                                 names if isinstance(names, (list, tuple)) else None)
        out = self.net(images)
        terms: dict[str, Tensor] = {}
        if self.loss_weights["seed"]:
            terms["seed"] = balanced_seed_loss(out["logits"], seeds, size=self.loss_size)
        if self.loss_weights["boundary"]:
            terms["boundary"] = crf_boundary_loss(out["logits"], images, size=self.loss_size, params=self.loss_crf,
                                                  iterations=None, workers=self.loss_crf_workers,
                                                  backend=self.crf_backend,
                                                  crf_image=self.loss_crf_image, input_space=self.input_space,
                                                  normalization=self.normalization())
        if self.loss_weights["score_map"]:
            terms["score_map"] = score_map_loss(out["score_map"], seeds,
                                                temperature=float(self.net.settings["score_temperature"]))
        # at least one weight is > 0 (checked in __init__), so terms is not empty; summed in order
        loss: Tensor = functools.reduce(operator.add, [self.loss_weights[k] * v for k, v in terms.items()])
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def probabilities(self, images: Tensor) -> Tensor:
        """Averaged softmax ``(B, K, H, W)`` over the scales, flips and sliding windows (no CRF).

        The class text is encoded at most once per call (the network caches it while its
        prompt does not change), not once per window.
        """
        device = next(self.net.parameters(), torch.empty(0)).device
        x = images.to(device=device, dtype=torch.float32)
        self.net.text_embeddings()  # encode the text once; every window reuses it
        return multiscale_softmax(lambda v: self.net(v)["logits"], x, scales=self.scales, base_size=self.base_size,
                                  flip=self.flip, window=self.window, stride=self.stride,
                                  window_batch=self.window_budget)

    @torch.no_grad()
    def refine(self, images: Tensor, cams: Tensor | None, labels: Tensor | None) -> Tensor:
        """Pseudo masks of a batch (the seeds or CAMs are not used at inference, only checked).

        Args:
            images: ``(B, 3, H, W)`` float RGB in [0, 1] (or normalised with CLIP's mean/std with
                ``input_space="normalized"``; the CRF then gets them un-normalised).
            cams: CAMs ``(B, C, H, W)`` or seed masks ``(B, H, W)`` of the same images, or ``None``.
            labels: ``(B, C)`` multi-hot (needed with ``restrict_to_labels``).

        Returns:
            on ``images``' device: ``float32 (B, C+1, H, W)`` probabilities summing to 1 (after the
            CRF: 0 for the classes absent from the argmax), or, with ``restrict_to_labels``, int64
            masks ``(B, H, W)`` with 255 where the class is not in the image label.
        """
        self._check_inputs(images, cams, labels)
        was_training = self.training
        self.eval()
        try:
            probs = self.probabilities(images)
        finally:
            self.train(was_training)
        if self.crf is not None:
            mean, std = self.normalization()
            unit = to_unit(images.float(), self.input_space, mean, std).clamp(0, 1)
            probs = crf_over_predicted_classes(probs, unit, self.crf, workers=self.crf_workers,
                                               backend=self.crf_backend)
        probs = probs.to(images.device)
        if not self.restrict_to_labels:
            return probs
        return restrict_to_labels(probs.argmax(1), torch.as_tensor(labels).to(images.device))

    def _check_inputs(self, images: Tensor, cams: Tensor | None, labels: Tensor | None) -> None:
        if not (isinstance(images, Tensor) and images.dim() == 4 and images.shape[1] == 3
                and images.is_floating_point()):
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
            space = "in [0, 1]" if self.input_space == "unit" else "normalised (input_space='normalized')"
            raise ValueError(f"images must be float (B, 3, H, W) {space}, got {got}")
        b, h, w = images.shape[0], *images.shape[-2:]
        if cams is not None and (cams.shape[0] != b or tuple(cams.shape[-2:]) != (h, w)):
            raise ValueError(f"images are {tuple(images.shape)} but the CAMs/seeds are {tuple(cams.shape)}: batch "
                             f"size and H x W must agree")
        shape = None if labels is None else tuple(torch.as_tensor(labels).shape)
        if shape is not None and shape != (b, self.num_classes):
            raise ValueError(f"labels must be (B, C) = ({b}, {self.num_classes}), got {shape}")
        if labels is None and self.restrict_to_labels:
            raise ValueError("restrict_to_labels needs the image labels (B, C)")

    def extra_repr(self) -> str:
        return (f"classes={len(self.class_names)}, preset={self.preset!r}, scales={self.scales}, flip={self.flip}, "
                f"window={self.window}/{self.stride}, crf={'off' if self.crf is None else 'on'}, "
                f"restrict_to_labels={self.restrict_to_labels}, loss_weights={self.loss_weights}, "
                f"loss_crf_image={self.loss_crf_image!r}, input_space={self.input_space!r}")


def _signature() -> inspect.Signature:
    """The constructor's keywords with every network setting spelled out (instead of ``**network``), so
    that configs are checked before anything runs and ``wsss plugins`` shows them."""
    own = [p for name, p in inspect.signature(WeakCLIPRefiner.__init__).parameters.items()
           if name != "self" and p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in own}
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in OFFICIAL.items()
             if k not in taken]
    return inspect.Signature(own + extra)


WeakCLIPRefiner.__signature__ = _signature()  # type: ignore[attr-defined]
