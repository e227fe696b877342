"""Training state (model, optimizer, step, RNG: what resume needs): written atomically, read back without
unpickling code, checked on resume. Loading weights into a model is :func:`wsss_kit.weights.load_checkpoint`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError, NumericalError, WeightsError
from ..weights.checkpoint import load_checkpoint as load_weights_checkpoint
from ..weights.loading import non_finite_tensors

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_trajectory",
    "load_model_weights",
    "load_training_state",
    "save_model_weights",
    "save_training_state",
]

CHECKPOINT_FORMAT = "wsss_kit.train_checkpoint/1"


def save_training_state(path: str | os.PathLike[str], state: Mapping[str, Any], check_finite: bool = True) -> Path:
    """Write a training checkpoint dict atomically: a crash mid-write leaves the previous one intact.

    With ``check_finite`` a state holding NaN or inf in any floating-point tensor (model,
    optimizer state...) is refused with :class:`NumericalError` naming the tensor, and the
    previous checkpoint stays, so the file on disk is always one a run can resume from.
    """
    if check_finite:
        _refuse_non_finite(state, f"checkpoint {path}")
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return Path(path)


def load_training_state(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_training_state` (``weights_only=True``)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear error
        raise WeightsError(
            f"cannot read training checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
            f"delete it to start over, or pass resume=False"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise WeightsError(f"{path} is not a wsss_kit training checkpoint (format {found!r}, "
                           f"expected {CHECKPOINT_FORMAT!r})")
    return state


def check_trajectory(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` when the config that wrote a checkpoint differs in a field that
    changes the sequence of updates (so resuming would not continue the same run)."""
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in current.items() if saved.get(k) != v]
    if diffs:
        raise ConfigError(
            f"checkpoint {path} was written with a different training config ({'; '.join(diffs)}); "
            f"resuming would not continue that run: use another output folder, delete the "
            f"checkpoint, or pass resume=False"
        )


def save_model_weights(path: str | os.PathLike[str], model: nn.Module) -> Path:
    """Save ``model.state_dict()`` (tensors only) atomically; :class:`NumericalError` naming the
    tensor, and nothing written, when a parameter or buffer holds NaN or inf."""
    state = model.state_dict()
    _refuse_non_finite(state, f"weights {path}")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def _refuse_non_finite(state: Any, what: str) -> None:
    bad = non_finite_tensors(state, limit=5)
    if bad:
        raise NumericalError(f"refusing to write {what}: NaN or inf in {', '.join(bad)}; the file on disk "
                             f"(if any) is kept")


def load_model_weights(path: str | os.PathLike[str], model: nn.Module, purpose: str = "weights file") -> None:
    """Load a saved state dict into ``model`` strictly (:func:`wsss_kit.weights.load_checkpoint`), with an
    error reading ``"<purpose> <path> ..."`` that lists mismatched keys."""
    load_weights_checkpoint(model, path, purpose=purpose)
