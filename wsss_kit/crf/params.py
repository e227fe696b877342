"""Dense-CRF parameter sets used by the WSSS papers' official code, as data.

The papers write them as (Gaussian sxy, compat) / (bilateral sxy, srgb, compat). The number
of mean-field iterations is 10 everywhere: it is the value of the boundary-loss CRF in WeakCLIP
and of PSA's CRF, and the DeepLab-style default of the other code bases.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class CRFParams:
    """Fully connected CRF kernels (Krähenbühl & Koltun) and the number of iterations.

    Attributes:
        gauss_sxy: spatial standard deviation of the smoothness (Gaussian) kernel, pixels.
        gauss_compat: weight of the smoothness kernel (Potts compatibility).
        bilateral_sxy: spatial standard deviation of the appearance (bilateral) kernel, pixels.
        bilateral_srgb: colour standard deviation of the appearance kernel, 0..255 units.
        bilateral_compat: weight of the appearance kernel.
        iterations: mean-field iterations.
    """

    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bilateral_sxy: float = 80.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 10.0
    iterations: int = 10

    def __post_init__(self) -> None:
        for name in ("gauss_sxy", "bilateral_sxy", "bilateral_srgb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"CRF parameter {name} must be a positive number, got {value!r}")
        for name in ("gauss_compat", "bilateral_compat"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ConfigError(f"CRF parameter {name} must be a number >= 0, got {value!r}")
        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or self.iterations < 0:
            raise ConfigError(f"CRF parameter iterations must be an integer >= 0, got {self.iterations!r}")

    def as_tuple(self) -> tuple[float, float, float, float, float, int]:
        """``(gauss_sxy, gauss_compat, bilateral_sxy, bilateral_srgb, bilateral_compat, iterations)``."""
        return (
            float(self.gauss_sxy),
            float(self.gauss_compat),
            float(self.bilateral_sxy),
            float(self.bilateral_srgb),
            float(self.bilateral_compat),
            int(self.iterations),
        )

    def replace(self, **changes: Any) -> "CRFParams":
        """A copy with some fields changed (unknown fields raise :class:`ConfigError`)."""
        return get_params({**dataclasses.asdict(self), **changes})


PARAM_SETS: dict[str, CRFParams] = {
    # DeepLab-style default; also the CRF of PSA's and MCTformer's AffinityNet labels.
    "default": CRFParams(3, 3, 80, 13, 10),
    "psa": CRFParams(3, 3, 80, 13, 10),
    # WeakCLIP: the CRF inside the boundary loss (on the 64x64 de-normalised image).
    "weakclip_loss": CRFParams(3, 3, 80, 13, 10),
    # WeakCLIP pseudo-mask inference on VOC and on COCO.
    "weakclip_voc": CRFParams(3, 3, 83, 5, 3),
    "weakclip_coco": CRFParams(1, 3, 67, 3, 4),
    # WeakCLIP's DeepLabV1-ResNet38 retrain, test time.
    "weakclip_retrain": CRFParams(1, 3, 112, 2, 3),
    # MCTformer's segmentation network (ResNet38 + dilated convs), test time.
    "mctformer_seg": CRFParams(4, 3, 83, 5, 3),
    # CLIMS/POLE's DeepLabV2 retrain (kazuto1011/deeplab-pytorch's VOC config), test time.
    "clims_retrain": CRFParams(1, 3, 67, 3, 4),
}
"""Named parameter sets; see ``docs/`` and METHODS for where each comes from."""

ALIASES: dict[str, str] = {"mctformer_psa": "psa", "deeplab": "default"}


def param_names() -> list[str]:
    """Valid names for :func:`get_params`, sorted."""
    return sorted(set(PARAM_SETS) | set(ALIASES))


def _unknown_name(name: str) -> ConfigError:
    names = param_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return ConfigError(f"unknown CRF parameter set {name!r}; available: {', '.join(names)}{hint}")


def get_params(spec: str | Mapping[str, Any] | CRFParams | None = None, **overrides: Any) -> CRFParams:
    """Resolve a CRF parameter specification.

    Args:
        spec: a name from :data:`PARAM_SETS` (e.g. ``"psa"``, ``"weakclip_voc"``); a
            :class:`CRFParams`; a mapping of fields, optionally with ``"preset"`` naming the set
            the other fields override (fields left out come from the preset, else ``default``);
            or ``None`` for ``default``.
        overrides: further field values, applied last.

    Raises:
        ConfigError: an unknown set name (listing the valid ones and close matches), an unknown
            field (naming it), or an invalid value.
    """
    fields = [f.name for f in dataclasses.fields(CRFParams)]
    changes: dict[str, Any]
    if spec is None:
        base, changes = PARAM_SETS["default"], {}
    elif isinstance(spec, CRFParams):
        base, changes = spec, {}
    elif isinstance(spec, str):
        key = ALIASES.get(spec, spec)
        if key not in PARAM_SETS:
            raise _unknown_name(spec)
        base, changes = PARAM_SETS[key], {}
    elif isinstance(spec, Mapping):
        changes = {str(k): v for k, v in spec.items()}
        preset = changes.pop("preset", "default")
        base = get_params(preset)
    else:
        raise ConfigError(
            f"CRF params must be a set name, a mapping or CRFParams, got {type(spec).__name__}: {spec!r}"
        )
    changes.update(overrides)
    for key in changes:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown CRF parameter {key!r}{hint}; valid keys: {', '.join(fields)}, preset"
            )
    if not changes:
        return base
    return CRFParams(**{**dataclasses.asdict(base), **changes})
