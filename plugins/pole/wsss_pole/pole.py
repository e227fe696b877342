"""POLE ("Prompting classes", Murugesan et al.): CLIMS with per-image selected class words and adapters.

:class:`POLE` is :class:`wsss_pole.clims.CLIMS` (same network, loss, presets and CAM inference)
with two changes to the object and background matching terms (paper Sec. 3.3–3.4, Fig. 2):

1. **[CLS*] prompts** (Table 1 "Ours", Table 4 row B). Each present class of each image uses the
   prompt of the word selected for that image and class by :class:`wsss_pole.synonyms.PoleSynonyms`
   from the baseline CAMs, before training (``wsss-pole-select``; JSON cache ``selection_cache``).
   The training pass therefore needs the image ids: ``forward(images, labels, names=...)``, which
   :func:`wsss_kit.engine.default_step` passes from ``batch["name"]``.
2. **Adapters** (Eqs. 7–8, Table 4 rows C, D): ``v* = r · A(v) + (1 − r) · v`` on the CLIP image
   embeddings (``A_v``) and on the class-text embeddings (``A_t``) before L2 normalisation, in OTM
   and BTM only; the co-occurring background suppression (CBS) uses the plain embeddings
   (:func:`wsss_pole.losses.clims_matching_terms`). ``adapter="vector"`` (POLE): learnable
   ``E``-d ratio vectors initialised at 0.2; ``"fixed"``: the constant 0.2; ``"none"``: no adapter.

Table 4 (VOC train, mIoU after RW): A ``cams/clims`` 70.5; B ``cams/pole, adapter: none`` 73.6;
C ``adapter: fixed`` 73.8; D ``adapter: vector`` 74.2 (:data:`wsss_pole.presets.POLE_TABLE4`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from wsss_kit.errors import WeightsError
from wsss_kit.registry import check_kwargs
from wsss_kit.weights import load_checkpoint

from .adapters import ADAPTER_MODES, AdaptedFeatures
from .clims import CLIMS
from .convert import convert_pole_official_adapters, split_official_adapters
from .losses import describe_value
from .presets import clims_preset
from .selection_cache import SelectionCacheError
from .synonyms import PoleSynonyms

__all__ = ["POLE", "SELECT_COMMAND", "build_synonyms"]

SELECT_COMMAND = "wsss-pole-select"
"""The console script that builds a selection cache (``python -m wsss_pole.cli``)."""

_NOT_FOR_POLE = {
    "prompt": "POLE's class prompts come from synonyms= (a pole_synonyms strategy); use cams/clims for "
              "another prompt strategy",
    "prompt_lr_mult": "POLE's prompts have no learnable parameters; the adapters' rate is adapter_lr_mult",
    "class_name_overrides": "the class words come from the synonym strategy: pass synonyms={'class_name_overrides': "
                            "{...}}",
}


def build_synonyms(synonyms: Any = None, selection_cache: str | os.PathLike[str] | None = None) -> PoleSynonyms:
    """The :class:`PoleSynonyms` that ``synonyms`` describes, reading ``selection_cache``.

    Args:
        synonyms: ``None`` (the defaults: Table S1, ``"A photo of {}."``), a ``PoleSynonyms``
            instance, a config node ``{"type": "prompts/pole_synonyms", ...}`` (built with
            :func:`wsss_kit.config.build`), a mapping of ``PoleSynonyms`` keywords, or a table
            (``"voc"`` or a file path, i.e. ``PoleSynonyms(synonyms=...)``).
        selection_cache: the JSON selection cache; set as the strategy's ``cache``. A strategy
            that already names another cache is an error.

    Raises:
        TypeError: ``synonyms`` is none of these, or a mapping has unknown keywords.
        ValueError: two different caches.
    """
    cache = None if selection_cache is None else Path(selection_cache).expanduser()
    if isinstance(synonyms, Mapping):
        from wsss_kit.config import build, is_node

        spec = dict(synonyms)
        _merge_cache(spec.get("cache"), cache, "synonyms['cache']")
        if cache is not None:
            spec["cache"] = str(cache)
        if is_node(spec):
            synonyms = build(spec, "synonyms")
        else:
            try:
                check_kwargs(PoleSynonyms, spec, where="cams/pole synonyms")
            except TypeError as exc:
                raise TypeError(f"{exc}. A mapping is read as PoleSynonyms keywords; to give a synonym table "
                                f"itself, pass synonyms={{'synonyms': {{class: [synonyms, ...]}}}} or a file") from None
            synonyms = PoleSynonyms(**spec)
    elif synonyms is None or isinstance(synonyms, (str, os.PathLike)):
        synonyms = PoleSynonyms("voc" if synonyms is None else synonyms, cache=cache)
    if not isinstance(synonyms, PoleSynonyms):
        raise TypeError(f"synonyms must be a PoleSynonyms (prompts/pole_synonyms), its config node or keywords, "
                        f"or a synonym table ('voc' or a file); got {type(synonyms).__name__}")
    _merge_cache(synonyms.cache_path, cache, "the synonym strategy's cache")
    if cache is not None:
        synonyms.cache_path = cache
    return synonyms


def _merge_cache(current: Any, wanted: Path | None, what: str) -> None:
    if current is None or wanted is None:
        return
    if Path(current).expanduser() != wanted:
        raise ValueError(f"selection_cache={str(wanted)!r} but {what} is {str(current)!r}; give the cache once")


class POLE(CLIMS):
    """POLE: CLIMS trained with per-image selected class words ([CLS*]) and CLIP adapters.

    Args:
        num_classes, class_names: as :class:`CLIMS`.
        synonyms: the selection strategy: a :class:`~wsss_pole.synonyms.PoleSynonyms`, its config
            node (``{type: prompts/pole_synonyms, ...}``), a mapping of its keywords, or a table
            (``"voc"``, a file); ``None``: Table S1 with ``"A photo of {}."``. Its table must
            cover ``class_names`` (checked here). Its words are the class words of every prompt
            (VOC: ``person → player`` ...), so ``class_name_overrides`` is not a POLE keyword.
        selection_cache: the selection cache (JSON) made beforehand by ``wsss-pole-select`` (or
            ``PoleSynonyms.select_dataset``) from the baseline CAMs. Read on the first training
            step; CAM inference does not need it.
        adapter: ``"vector"`` (POLE, Table 4 D), ``"fixed"`` (C), ``"none"`` (B) or ``"scalar"``
            (one learnable ratio; not in the paper). See :class:`~wsss_pole.adapters.AdaptedFeatures`.
        adapter_ratio: the initial (``vector``, ``scalar``) or constant (``fixed``) ratio ``r``; 0.2.
        adapter_lr_mult: learning-rate multiplier of the adapters' parameter group. 1.0: the paper
            gives one learning rate, 2.5e-4 (supplement A); the released code scales the adapters'
            by ``clims_adapter_lr_factor``, whose value is not recorded.
        adapter_final_relu: the ReLU after the adapter's second layer (POLE's code: yes; Eq. 7: no).
        **kwargs: the other keywords of :class:`CLIMS` (``preset``, ``backbone``, ``init_checkpoint``,
            ``clip_model``, ``clip_weights``, loss weights ...), except ``prompt``, ``prompt_lr_mult``
            and ``class_name_overrides``.

    The training pass is ``forward(images, labels, names=image_ids)``; without ``names`` it is an
    error (the prompts depend on the image). Checkpoints hold ``cam.*`` and the adapters
    (``image_adapter.*``, ``text_adapter.*``), not CLIP.
    """

    wsss_api_version = "1.0"

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, *, synonyms: Any = None,
                 selection_cache: str | os.PathLike[str] | None = None, adapter: str = "vector",
                 adapter_ratio: float = 0.2, adapter_lr_mult: float = 1.0, adapter_final_relu: bool = True,
                 **kwargs: Any) -> None:
        for key, why in _NOT_FOR_POLE.items():
            if key in kwargs:
                raise TypeError(f"cams/pole does not take {key}=: {why}")
        if adapter not in ADAPTER_MODES:
            raise ValueError(f"adapter must be one of {', '.join(ADAPTER_MODES)} (POLE Table 4: vector = D, "
                             f"fixed = C, none = B); got {adapter!r}")
        if not adapter_lr_mult >= 0:
            raise ValueError(f"adapter_lr_mult must be >= 0; got {adapter_lr_mult!r}")
        # check the table against the classes before the networks are built
        names = CLIMS._class_names(class_names, clims_preset(kwargs.get("preset", "voc")), num_classes)
        strategy = build_synonyms(synonyms, selection_cache)
        words = [c[0] for c in strategy.candidates(names)]
        super().__init__(num_classes, names, prompt=strategy, prompt_lr_mult=0.0,
                         class_name_overrides={n: w for n, w in zip(names, words) if n != w}, **kwargs)
        self.adapter_mode = adapter
        self.adapter_lr_mult = float(adapter_lr_mult)
        dim = self.clip.embed_dim
        if adapter == "none":
            self.image_adapter: AdaptedFeatures | None = None
            self.text_adapter: AdaptedFeatures | None = None
        else:
            self.image_adapter = AdaptedFeatures(dim, adapter, ratio=adapter_ratio, final_relu=adapter_final_relu)
            self.text_adapter = AdaptedFeatures(dim, adapter, ratio=adapter_ratio, final_relu=adapter_final_relu)

    # ------------------------------------------------------------------ prompts
    @property
    def synonyms(self) -> PoleSynonyms:
        """The selection strategy (also :attr:`prompt`)."""
        return self.prompt  # type: ignore[return-value]

    def class_text_features(self) -> Tensor:
        """The class words' prompts ``(C, E)`` (no image: CLIMS's prompts with POLE's class words)."""
        return self.synonyms(self.class_names, clip=self.clip)

    def selected_text_features(self, names: Sequence[str], labels: Tensor | None = None) -> Tensor:
        """``(B, C, E)``: for image ``b`` and present class ``c`` the prompt of the word selected for
        them; for absent classes the class word's prompt.

        Raises:
            SelectionCacheError: no cache, or an image without selections in it (the message names
                the image ids, the cache and the command that builds it).
            ValueError: a present class without a selected word (selections made with other labels).
        """
        names = [str(n) for n in names]
        try:
            feats = self.synonyms(self.class_names, clip=self.clip, image_names=names, labels=labels)
        except KeyError:
            raise self._missing_selection(names) from None
        except SelectionCacheError:
            cache = self.synonyms.cache_path
            if cache is not None and not cache.exists():
                raise SelectionCacheError(f"POLE's selection cache {cache} does not exist; "
                                          f"{self._build_hint()}") from None
            raise  # unreadable, or made with another synonym table or template: its own message
        expected = (len(names), self.num_classes, self.clip.embed_dim)
        if tuple(feats.shape) != expected:
            raise ValueError(
                f"the synonym strategy returned {describe_value(feats)}; expected text features {expected}")
        return feats

    def _build_hint(self) -> str:
        cache = self.synonyms.cache_path
        return (f"build it from the baseline CAMs with `{SELECT_COMMAND} CONFIG --cams <baseline run_dir>/cams/train "
                f"--out {cache if cache is not None else 'CACHE.json'}` (CAM files from `wsss cam`)")

    def _missing_selection(self, names: Sequence[str]) -> SelectionCacheError:
        cache = self.synonyms.cache_path
        known = self.synonyms.selections
        missing = [n for n in names if n not in known]
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        images = f"image{'s' if len(missing) > 1 else ''} {shown}"
        if cache is None:
            return SelectionCacheError(f"POLE has no synonym selection for {images} (no selection_cache, "
                                       f"{len(known)} selections in memory): pass selection_cache=CACHE.json and "
                                       f"{self._build_hint()}")
        return SelectionCacheError(f"no synonym selection for {images} in selection cache {cache} ({len(known)} "
                                   f"images; was it made for another split or dataset?); {self._build_hint()} "
                                   f"for the training data")

    # ------------------------------------------------------------------ network
    def forward(self, images: Tensor, labels: Tensor | None = None,
                names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Training pass: :meth:`CLIMS.forward` with the selected words' prompts and the adapters.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
            labels: ``(B, C)`` multi-hot, or ``None`` (then only ``"logits"``; ``names`` unused).
            names: the ``B`` image ids (``batch["name"]``), needed with ``labels``.
        """
        if labels is not None:
            if names is None or isinstance(names, str):
                raise ValueError("POLE's training pass needs the image ids to find their selected words: "
                                 "forward(images, labels, names=batch['name']) (wsss_kit's default training "
                                 "step passes them); got " + ("none" if names is None else repr(names)))
            if len(names) != images.shape[0]:
                raise ValueError(f"names has {len(names)} image ids but the batch has {images.shape[0]} images")
        def class_text() -> Tensor:  # called only with labels, for which names was checked above
            assert names is not None
            return self.selected_text_features(names, labels)

        return self._training_pass(images, labels, class_text,
                                   image_adapter=self.image_adapter, text_adapter=self.text_adapter)

    # ------------------------------------------------------------------ checkpoints
    def load_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Load trained weights strictly: a checkpoint of this class (``cam.*``, ``image_adapter.*``,
        ``text_adapter.*``), POLE's official checkpoint (the CLIMS CAM network in IRN's layout plus the
        adapters ``Av.*``/``At.*`` and their ``adapters.0/1.*`` aliases, converted by
        :func:`wsss_pole.convert.convert_pole_official_adapters`; needs ``adapter="vector"`` and a CLIP
        of the adapters' width, 512 for the official ViT-B/32), or a CAM network alone (IRN/CLIMS or
        ``resnet_cam`` layout; the adapters keep their values).

        Raises:
            WeightsError: missing file, or weights that do not fit (the message names the key).
        """
        load_checkpoint(self, checkpoint, converter=self._convert_checkpoint, purpose="POLE checkpoint")

    def _convert_checkpoint(self, state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        adapters, rest = split_official_adapters(state)
        if not adapters:
            return super()._convert_checkpoint(state, source)
        if self.adapter_mode != "vector":
            raise WeightsError(f"{source} is an official POLE checkpoint whose adapters Av/At learn ratio vectors; "
                               f"build cams/pole with adapter='vector' to load it (this one has "
                               f"adapter={self.adapter_mode!r})")
        converted = convert_pole_official_adapters(adapters, source)
        width = int(converted["image_adapter.adapter.fc1.weight"].shape[1])
        if width != self.clip.embed_dim:
            av_shape = tuple(adapters.get("Av.fc.0.weight", converted["image_adapter.adapter.fc1.weight"]).shape)
            raise WeightsError(f"{source}: its adapters act on {width}-d CLIP embeddings (Av.fc.0.weight "
                               f"{av_shape}) "
                               f"but this POLE's CLIP {self.clip.name!r} embeds in {self.clip.embed_dim}; build it "
                               f"with the checkpoint's clip_model (official: ViT-B-32, 512)")
        base = super()._convert_checkpoint(rest, source) if rest else self.state_dict()
        return {**base, **converted}

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The adapters' trainable parameters (MLPs and learnable ratios)."""
        return [p for m in (self.image_adapter, self.text_adapter) if m is not None
                for p in m.parameters() if p.requires_grad]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """:meth:`CLIMS.param_groups` (backbone ``lr``, classifier ``lr × classifier_lr_mult``) and
        the adapters in their own group at ``lr × adapter_lr_mult``. CLIP is never included."""
        adapters = self.adapter_parameters()
        ids = {id(p) for p in adapters}
        groups = []
        for group in super().param_groups(lr):
            params = [p for p in group["params"] if id(p) not in ids]
            if params:
                groups.append({**group, "params": params})
        if adapters:
            groups.append({"params": adapters, "lr": lr * self.adapter_lr_mult, "lr_mult": self.adapter_lr_mult})
        return groups

    def extra_repr(self) -> str:
        cache = self.synonyms.cache_path
        return (f"{super().extra_repr()}, adapter={self.adapter_mode!r}, adapter_lr_mult={self.adapter_lr_mult:g}, "
                f"selection_cache={str(cache) if cache is not None else None!r}")


def _pole_signature() -> inspect.Signature:
    """POLE's own keywords followed by CLIMS's (less those POLE sets itself), so that the registry
    lists and checks every keyword of ``cams/pole``."""
    own = [p for p in inspect.signature(POLE.__init__).parameters.values() if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in own}
    rest = [p for name, p in inspect.signature(CLIMS.__init__).parameters.items()
            if name not in taken and name not in _NOT_FOR_POLE]
    return inspect.Signature(own + rest)


POLE.__init__.__signature__ = _pole_signature()  # type: ignore[attr-defined]
