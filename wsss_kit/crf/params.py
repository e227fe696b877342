"""Dense-CRF parameter sets used by the WSSS papers' official code, as data.

The core declares the method-neutral sets; each plugin declares its methods' sets (and aliases of
identical ones) in the entry-point group :data:`CRF_PARAMS_GROUP`; :func:`register_crf_params` adds
one in-process. Configs name a set by any of its names (``params: psa``).

The papers write them as (Gaussian sxy, compat) / (bilateral sxy, srgb, compat). The number
of mean-field iterations is 10 everywhere: it is the value of the boundary-loss CRF in WeakCLIP
and of PSA's CRF, and the DeepLab-style default of the other code bases.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from ..catalog import Alias, Catalog, CatalogEntry, CatalogView
from ..errors import ConfigError

__all__ = ["CRF_PARAMS_CATALOG", "CRF_PARAMS_GROUP", "PARAM_SETS", "Alias", "CRFParams", "get_params",
           "list_crf_params", "param_names", "register_crf_params"]


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


_CORE_PARAM_SETS: dict[str, CRFParams | Alias] = {
    # Method-neutral sets only; each plugin declares its methods' sets and aliases (entry-point group
    # wsss_kit.crf_params, e.g. plugins/weakclip/wsss_weakclip/crf_params.py).
    # Krähenbühl & Koltun's / DeepLab's defaults: Gaussian (3, 3), bilateral (80, 13, 10).
    "default": CRFParams(3, 3, 80, 13, 10),
    "deeplab": Alias("default"),
    # kazuto1011/deeplab-pytorch's config (the DeepLabV2 re-implementation WSSS retrains use): (1, 3), (67, 3, 4).
    "deeplab_pytorch": CRFParams(1, 3, 67, 3, 4),
}

CRF_PARAMS_GROUP = "wsss_kit.crf_params"
"""Entry-point group in which a plugin declares its CRF parameter sets: each entry point names a
mapping ``{name: CRFParams or Alias}`` (or a function returning one) in the plugin."""

CRF_PARAMS_CATALOG: Catalog[CRFParams] = Catalog("CRF parameter set", CRF_PARAMS_GROUP, CRFParams, _CORE_PARAM_SETS,
                                                  error_type=ConfigError)
"""Every named parameter set: the core's, the plugins' and in-process ones (see :mod:`wsss_kit.catalog`)."""

PARAM_SETS: CatalogView[CRFParams] = CatalogView(CRF_PARAMS_CATALOG)
"""Name (aliases included) -> :class:`CRFParams`, read like a dict; where each set comes from:
``docs/methods.md`` ("Dense CRF parameter sets")."""


def param_names() -> list[str]:
    """Valid names for :func:`get_params` (sets and aliases), sorted."""
    return CRF_PARAMS_CATALOG.names()


def list_crf_params() -> list[CatalogEntry[CRFParams]]:
    """One row per parameter set: name, :class:`CRFParams`, the distribution declaring it, its aliases."""
    return CRF_PARAMS_CATALOG.entries()


def register_crf_params(name: str, params: CRFParams | Alias, *, override: bool = False) -> None:
    """Declare a parameter set (or an :class:`~wsss_kit.catalog.Alias` of one) in this process.

    Raises:
        ConfigError: ``name`` exists already (naming who declares it) and ``override`` is false, or
            ``params`` is neither a :class:`CRFParams` nor an ``Alias``.
    """
    CRF_PARAMS_CATALOG.register(name, params, override=override)


def get_params(spec: str | Mapping[str, Any] | CRFParams | None = None, **overrides: Any) -> CRFParams:
    """Resolve a CRF parameter specification.

    Args:
        spec: a name from :data:`PARAM_SETS` (e.g. ``"default"``, ``"weakclip_voc"``); a
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
        base, changes = CRF_PARAMS_CATALOG.get("default"), {}
    elif isinstance(spec, CRFParams):
        base, changes = spec, {}
    elif isinstance(spec, str):
        base, changes = CRF_PARAMS_CATALOG.get(spec), {}
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
