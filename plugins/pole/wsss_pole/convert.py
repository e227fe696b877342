"""POLE's official checkpoint layout → this plugin's :class:`~wsss_pole.POLE` layout.

Facts from the official code (github Ruxie189/WSS_POLE, ``clip_tools/clip_adapter_utils.py``,
``step/train_clims_adapt.py``, ``step/make_clims_adapt.py``):

* its ``Adapter(c_in, reduction=4)`` holds ``fc = Sequential(Linear(c_in, c_in // 4, bias=False),
  ReLU, Linear(c_in // 4, c_in, bias=False), ReLU)`` and ``ratio_vector``, a parameter of 512 ones
  × 0.2; its forward is ``fc(x)``, and the caller mixes ``r ⊙ fc(v) + (1 − r) ⊙ v`` with
  ``r = ratio_vector`` before the L2 normalisation (``Av`` on the CLIP image embeddings, ``At`` on
  the text embeddings, ViT-B/32's 512-d space);
* state-dict keys of one adapter: ``fc.0.weight`` ``(D/4, D)``, ``fc.2.weight`` ``(D, D/4)``,
  ``ratio_vector`` ``(D,)``; no biases (``fc.1``/``fc.3`` are the parameter-free ReLUs);
* the trained checkpoint is ``torch.save(model.module.state_dict())`` of the CLIMS CAM network
  (``net/resnet50_clims.py``, IRN's layout, see :mod:`wsss_cams.convert_resnet_cam`) after
  ``model.Av, model.At = Adapter(512), Adapter(512)`` and ``model.adapters = ModuleList([Av, At])``,
  so every adapter tensor is written twice: ``Av.*`` = ``adapters.0.*`` and ``At.*`` = ``adapters.1.*``.

Mapping onto :class:`wsss_pole.adapters.AdaptedFeatures` (``adapter="vector"``)::

    Av. / adapters.0.   →  image_adapter.        At. / adapters.1.  →  text_adapter.
    fc.0.weight         →  adapter.fc1.weight    fc.2.weight        →  adapter.fc2.weight
    ratio_vector        →  ratio
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from wsss_kit.errors import WeightsError
from wsss_kit.weights import register_converter
from wsss_kit.weights.converters import strip_module_prefix

__all__ = ["OFFICIAL_ADAPTER_KEYS", "OFFICIAL_ADAPTER_PREFIXES", "convert_official_adapter",
           "convert_pole_official_adapters", "has_official_adapters", "split_official_adapters"]

OFFICIAL_ADAPTER_KEYS = {"fc.0.weight": "adapter.fc1.weight", "fc.2.weight": "adapter.fc2.weight",
                         "ratio_vector": "ratio"}
"""One official ``Adapter``'s keys → :class:`~wsss_pole.adapters.AdaptedFeatures`' keys."""

OFFICIAL_ADAPTER_PREFIXES = {"Av.": "image_adapter", "At.": "text_adapter",
                             "adapters.0.": "image_adapter", "adapters.1.": "text_adapter"}
"""Where the official checkpoint holds its two adapters (``adapters.N.`` are aliases of ``Av.``/``At.``)."""


def has_official_adapters(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether ``state_dict`` holds adapters in the official layout (``Av.*``/``At.*``/``adapters.N.*``)."""
    return any(k.startswith(tuple(OFFICIAL_ADAPTER_PREFIXES)) for k in state_dict)


def split_official_adapters(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(adapter entries, the rest)`` of an official POLE checkpoint (``module.`` prefix removed)."""
    state = strip_module_prefix(state_dict)
    prefixes = tuple(OFFICIAL_ADAPTER_PREFIXES)
    adapters = {k: v for k, v in state.items() if k.startswith(prefixes)}
    return adapters, {k: v for k, v in state.items() if k not in adapters}


def convert_official_adapter(state_dict: Mapping[str, Tensor], source: str = "checkpoint",
                             prefix: str = "") -> dict[str, Tensor]:
    """One official ``Adapter``'s state dict (``fc.0.weight``, ``fc.2.weight``, ``ratio_vector``) →
    an :class:`~wsss_pole.adapters.AdaptedFeatures` state dict (``adapter.fc1.weight``,
    ``adapter.fc2.weight``, ``ratio``) of mode ``"vector"``.

    ``prefix`` is the keys' prefix in the file (``"Av."``), used in messages only.

    Raises:
        WeightsError: a missing or unexpected key, a bias (the official layers have none), or shapes
            that are not ``(H, D)``, ``(D, H)``, ``(D,)`` (naming the key, expected and found shapes).
    """
    missing = [prefix + k for k in OFFICIAL_ADAPTER_KEYS if k not in state_dict]
    if missing:
        raise WeightsError(f"{source}: POLE's official adapter lacks {', '.join(map(repr, missing))}; an official "
                           f"Adapter holds {', '.join(prefix + k for k in OFFICIAL_ADAPTER_KEYS)}")
    for key in state_dict:
        if key not in OFFICIAL_ADAPTER_KEYS:
            why = (" (the official adapter's linear layers have no bias)" if key.endswith(".bias") else "")
            raise WeightsError(f"{source}: unexpected key {prefix + key!r} in POLE's official adapter{why}; "
                               f"expected only {', '.join(prefix + k for k in OFFICIAL_ADAPTER_KEYS)}")
    w1, w2, ratio = (state_dict[k] for k in OFFICIAL_ADAPTER_KEYS)
    if w1.dim() != 2:
        raise WeightsError(f"{source}: {prefix}fc.0.weight must be a (D/4, D) linear weight; got {tuple(w1.shape)}")
    hidden, dim = w1.shape
    if tuple(w2.shape) != (dim, hidden):
        raise WeightsError(f"{source}: {prefix}fc.2.weight must be ({dim}, {hidden}) to follow {prefix}fc.0.weight "
                           f"{tuple(w1.shape)}; got {tuple(w2.shape)}")
    if tuple(ratio.shape) != (dim,):
        raise WeightsError(f"{source}: {prefix}ratio_vector must be ({dim},), one ratio per embedding channel of "
                           f"the {dim}-d adapter; got {tuple(ratio.shape)} (the official code fixes 512 ratios: "
                           f"its adapters fit a 512-d CLIP such as ViT-B/32)")
    return {OFFICIAL_ADAPTER_KEYS[k]: state_dict[k] for k in OFFICIAL_ADAPTER_KEYS}


@register_converter("pole_official_adapters")
def convert_pole_official_adapters(state_dict: Mapping[str, Tensor], source: str = "checkpoint",
                                   ignore_other_keys: bool = False) -> dict[str, Tensor]:
    """POLE's two official adapters → ``image_adapter.*`` / ``text_adapter.*`` of :class:`~wsss_pole.POLE`.

    Args:
        state_dict: an official POLE checkpoint (or its adapter entries): ``Av.*`` (image side),
            ``At.*`` (text side) and/or their aliases ``adapters.0.*``/``adapters.1.*``.
        source: names the checkpoint in messages.
        ignore_other_keys: drop the CAM network's keys instead of refusing them (use
            :func:`split_official_adapters` to keep them).

    Returns:
        ``{"image_adapter.adapter.fc1.weight", "image_adapter.adapter.fc2.weight", "image_adapter.ratio",
        "text_adapter.…"}`` for a POLE built with ``adapter="vector"``.

    Raises:
        WeightsError: no adapters, one side missing, aliases that disagree, other keys (unless
            ``ignore_other_keys``), or a malformed adapter (see :func:`convert_official_adapter`).
    """
    adapters, rest = split_official_adapters(state_dict)
    if rest and not ignore_other_keys:
        shown = ", ".join(list(rest)[:4]) + (f" ... (+{len(rest) - 4} more)" if len(rest) > 4 else "")
        raise WeightsError(f"{source}: keys that are not POLE's official adapters (Av.*, At.*, adapters.0/1.*): "
                           f"{shown}; load a whole official checkpoint with POLE.load_weights")
    if not adapters:
        raise WeightsError(f"{source} holds no POLE adapters: expected Av.fc.0.weight, Av.fc.2.weight, "
                           f"Av.ratio_vector and the same under At. (or adapters.0./adapters.1.)")
    converted: dict[str, Tensor] = {}
    for side, names in (("image_adapter", ("Av.", "adapters.0.")), ("text_adapter", ("At.", "adapters.1."))):
        found = {p: {k[len(p):]: v for k, v in adapters.items() if k.startswith(p)} for p in names}
        found = {p: part for p, part in found.items() if part}
        if not found:
            raise WeightsError(f"{source}: POLE's {'image' if side == 'image_adapter' else 'text'} adapter is "
                               f"missing: no {names[0]}* (or {names[1]}*) keys, e.g. {names[0]}fc.0.weight")
        # each family must be a whole adapter; then the aliases must hold the same tensors
        parts = {prefix: convert_official_adapter(part, source, prefix) for prefix, part in found.items()}
        (main_prefix, main), *others = parts.items()
        for prefix, part in others:
            for key, value in part.items():
                if value.shape != main[key].shape or not torch.equal(value, main[key]):
                    official = next(k for k, v in OFFICIAL_ADAPTER_KEYS.items() if v == key)
                    raise WeightsError(f"{source}: {prefix}{official} and {main_prefix}{official} must be aliases of "
                                       f"one tensor (the official model registers each adapter twice) but differ; "
                                       f"the file was edited after saving")
        for key, value in main.items():
            converted[f"{side}.{key}"] = value
    return converted
