"""Presets of the random-walk refiners ``psa_rw`` and ``irn_rw``: the settings each official code
used, as plain dicts of constructor keywords.

``create("refiners", "irn_rw", preset="clims_voc", bg_threshold=0.22)`` means "CLIMS's VOC
settings, then this override". A keyword left at :data:`PRESET` takes the preset's value.

``paper`` equals ``official`` for both: neither PSA/MCTformer's nor IRNet's paper states a
setting of these steps that their released code changes (docs/methods.md lists none).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["IRN_PRESETS", "PRESET", "PSA_PRESETS", "resolve_preset"]


class _FromPreset:
    """The default of a preset-controlled keyword (shown as ``<preset>`` in signatures)."""

    _instance: "_FromPreset | None" = None

    def __new__(cls) -> "_FromPreset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<preset>"

    def __reduce__(self) -> str:
        return "PRESET"


PRESET: Any = _FromPreset()

_MCTFORMER_PSA = {
    # MCTformer's PSA step (its psa/ folder): CRF confident regions with background (1 - max)^1 and
    # ^12; walk with a constant background 0.39, beta 8, log t 6, every pair within the radius.
    "alpha_low": 1.0, "alpha_high": 12.0, "alpha": None, "bg_threshold": 0.39, "beta": 8.0, "log_t": 6,
    "cover_border": True,
}
PSA_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "official": MappingProxyType(_MCTFORMER_PSA),
    "paper": MappingProxyType(_MCTFORMER_PSA),
    # PSA's own code (jiwoon-ahn/psa): infer_cls --low_alpha 4 --high_alpha 32; infer_aff
    # --alpha 16 --beta 8 --logt 8, with its cropped pair layout.
    "psa": MappingProxyType({"alpha_low": 4.0, "alpha_high": 32.0, "alpha": 16.0, "bg_threshold": None,
                             "beta": 8.0, "log_t": 8, "cover_border": False}),
})
"""``psa_rw`` presets; ``official`` = MCTformer's use of PSA (the method this toolkit reproduces)."""

_IRN = {
    # IRNet (jiwoon-ahn/irn run_sample.py): conf_fg_thres 0.30, conf_bg_thres 0.05, beta 10,
    # exp_times 8, sem_seg_bg_thres 0.25; pairs within radius 5 for the walk, 10 for training.
    "conf_fg_threshold": 0.30, "conf_bg_threshold": 0.05, "bg_threshold": 0.25, "beta": 10.0, "exp_times": 8,
    "radius": 5, "train_radius": 10,
}
IRN_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "official": MappingProxyType(_IRN),
    "paper": MappingProxyType(_IRN),
    # CLIMS (and POLE, its fork) on VOC: fg 0.30 / bg 0.10, segmentation background 0.20.
    "clims_voc": MappingProxyType({**_IRN, "conf_bg_threshold": 0.10, "bg_threshold": 0.20}),
    # CLIMS on COCO: fg 0.35 / bg 0.10, segmentation background 0.25.
    "clims_coco": MappingProxyType({**_IRN, "conf_fg_threshold": 0.35, "conf_bg_threshold": 0.10,
                                    "bg_threshold": 0.25}),
})
"""``irn_rw`` presets; ``official`` = IRNet's code."""


def resolve_preset(presets: Mapping[str, Mapping[str, Any]], preset: str | Mapping[str, Any], what: str,
                   given: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's settings with every ``given`` keyword that is not :data:`PRESET` on top.

    ``preset`` is a name of ``presets`` or a dict of overrides of ``official``.

    Raises:
        ValueError: an unknown preset name (the message lists the names and the closest match).
    """
    if isinstance(preset, str):
        if preset not in presets:
            close = difflib.get_close_matches(preset, list(presets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {what} preset {preset!r}{hint}; available: {', '.join(presets)}")
        base = dict(presets[preset])
    elif isinstance(preset, Mapping):
        unknown = sorted(set(preset) - set(presets["official"]))
        if unknown:
            raise ValueError(f"{what} preset dict: {', '.join(unknown)} not preset keywords; valid: "
                             f"{', '.join(presets['official'])}")
        base = {**presets["official"], **preset}
    else:
        raise ValueError(f"{what} preset must be a name ({', '.join(presets)}) or a dict, got {preset!r}")
    return {**base, **{k: v for k, v in given.items() if v is not PRESET}}
