"""The refiner's checkpoints: reading one before the network exists, where its CLIP comes from, and
turning any of the three layouts into the refiner's state dict.

Three layouts load into :class:`~wsss_weakclip.refiner.WeakCLIPRefiner`: its own checkpoint
(``train_refiner/model.pt``: ``net.*`` plus a record of the class names and the ``clip_weights``),
a bare :class:`~wsss_weakclip.WeakCLIPNet` state dict, and an official WeakCLIP checkpoint
(github hustvl/WeakCLIP, converted by :mod:`wsss_weakclip.convert`), which also carries its CLIP.

Where the CLIP comes from (:func:`choose_clip`): a CLIP file (``clip_weights``) or a ``CLIPModel``
given by the caller always wins, and an official checkpoint's CLIP tensors must then equal it.
A CLIP file that is not here (e.g. ``released:clip_vit_b16_openai`` not downloaded) gives way, with a
warning, to an official checkpoint that carries its CLIP: the checkpoint alone is enough.
Otherwise (``clip_weights`` ``None`` or ``"default"``) the checkpoint decides: an official one's own
CLIP tensors (:func:`wsss_weakclip.official_clip.clip_from_official`), or, with ``None``, the
``clip_weights`` a refiner checkpoint records (``"default"`` when it records none).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wsss_kit.clip import CLIPModel
from wsss_kit.errors import WeightsError
from wsss_kit.weights import load_state_dict, resolve, resolve_checkpoint

from .official_clip import carries_clip, clip_from_official
from .presets import resolve_settings

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_PURPOSE", "UNRECORDED", "ClassNamesError", "ClipChoice", "choose_clip",
           "class_names_mismatch", "read_checkpoint", "recorded_clip"]

CHECKPOINT_FORMAT = "wsss_weakclip.refiner/1"
"""The ``format`` of the refiner's own checkpoint record."""

CHECKPOINT_PURPOSE = "WeakCLIP checkpoint"
"""How errors name a checkpoint file: ``"WeakCLIP checkpoint <path> ..."``."""

UNRECORDED: Any = object()
"""``clip_weights`` not recorded (a ``CLIPModel`` was given, or the CLIP came from an official checkpoint)."""


class ClassNamesError(WeightsError, ValueError):
    """Weights trained for other class names (a ``ValueError`` and a :class:`~wsss_kit.WeightsError`)."""


def read_checkpoint(spec: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The state dict of a checkpoint (a spec, read once: hub tags refused, ``weights_only``; or a mapping,
    ``{"state_dict": ...}`` unwrapped) and how errors name it."""
    if isinstance(spec, Mapping):
        state = dict(spec)
        inner = state.get("state_dict")
        return (dict(inner) if isinstance(inner, Mapping) else state), "the given state dict"
    path = resolve_checkpoint(spec, purpose=CHECKPOINT_PURPOSE)
    return load_state_dict(path), f"{CHECKPOINT_PURPOSE} {path}"


def recorded_clip(state: Mapping[str, Any]) -> Any:
    """The ``clip_weights`` a refiner checkpoint records (``None`` = a random CLIP), else ``"default"``."""
    extra = state.get("_extra_state")
    if isinstance(extra, Mapping) and "clip_weights" in extra:
        return extra["clip_weights"]
    return "default"


@dataclass
class ClipChoice:
    """What :func:`choose_clip` decided: the ``clip_model`` / ``clip_weights`` to build ``WeakCLIPNet`` with,
    the ``clip_weights`` to record in the refiner's checkpoints (:data:`UNRECORDED`: none), and the
    checkpoint's state when it had to be read already (``None``: not read)."""

    clip_model: Any
    clip_weights: Any
    record: Any
    state: dict[str, Any] | None = None
    source: str = ""


def choose_clip(clip_model: Any, clip_weights: Any, checkpoint: Any, preset: Any,
                network: Mapping[str, Any]) -> ClipChoice:
    """Where the refiner's CLIP comes from (see the module docstring); reads the checkpoint only when
    no CLIP is given (once: its state is returned for loading)."""
    given = isinstance(clip_model, CLIPModel)
    record = UNRECORDED if given else (os.fspath(clip_weights) if isinstance(clip_weights, os.PathLike)
                                       else clip_weights)
    missing: WeightsError | None = None
    if checkpoint is not None and not given and isinstance(clip_weights, (str, os.PathLike)) \
            and clip_weights != "default":
        missing = _missing_file(clip_weights)
    if checkpoint is None or given or not (clip_weights is None or clip_weights == "default" or missing):
        return ClipChoice(clip_model, clip_weights, record)
    state, source = read_checkpoint(checkpoint)
    if missing is not None and not carries_clip(state):
        raise missing
    if missing is not None:
        warnings.warn(f"clip_weights {os.fspath(clip_weights)!r} is not here ({missing}); {source} carries its own "
                      "CLIP tensors, so the refiner uses those", stacklevel=3)
    if carries_clip(state):
        s = resolve_settings(preset, **network)
        clip = clip_from_official(state, clip_model, source=source, precision=s["clip_precision"],
                                  normalization=s["clip_normalization"], pos_interpolation=s["pos_interpolation"])
        return ClipChoice(clip, None, UNRECORDED, state, source)
    if clip_weights is None:
        clip_weights = record = recorded_clip(state)
    return ClipChoice(clip_model, clip_weights, record, state, source)


def _missing_file(spec: str | os.PathLike[str]) -> WeightsError | None:
    """The error of a CLIP weights spec whose file is not here (``None`` when it resolves)."""
    try:
        resolve(spec, purpose="clip_weights")
    except WeightsError as exc:
        return exc
    return None


def class_names_mismatch(source: str, theirs: Sequence[str], ours: Sequence[str]) -> str:
    """The message for weights trained on other classes, naming both lists."""
    return (f"{source} was trained for {len(theirs)} classes {list(theirs)[:6]}{' ...' if len(theirs) > 6 else ''} "
            f"but this refiner has {len(ours)}: {list(ours)[:6]}{' ...' if len(ours) > 6 else ''}; use weights trained "
            f"on this dataset's classes (class_names, background first)")
