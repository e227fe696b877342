"""Checks on what plugins hand to the pipeline, at the boundary where it is stored or scored.

A plugin's CAMs, refined probabilities or head logits are checked against the interface (shape,
dtype, range, finiteness) before anything is written, so that a broken plugin stops the run with an
error naming the plugin, its distribution, the item and the tensor, instead of saving NaN or
out-of-range maps that would then be scored as if they were results.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any, Sequence

import torch

from ..cam_ops import class_argmax
from ..errors import PluginOutputError
from ..interfaces import IGNORE_INDEX

__all__ = ["check_cam_output", "check_head_output", "check_refiner_output", "plugin_origin"]

CAM_RANGE_TOLERANCE = 1e-3
"""CAM values may leave [0, 1] by this much (float rounding of a max-normalisation) before it is an error."""


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def plugin_origin(obj: Any) -> str:
    """``"ClassName from dist version"`` for a plugin object (its class's top-level package's distribution)."""
    cls = obj if isinstance(obj, type) else type(obj)
    top = (cls.__module__ or "").split(".")[0]
    dists = _distributions().get(top, [])
    if not dists:
        return f"{cls.__qualname__} (module {cls.__module__}, not from an installed distribution)"
    try:
        version = importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"{cls.__qualname__} from {dists[0]} {version}"


def _fail(who: Any, stage: str, items: Sequence[str], what: str) -> PluginOutputError:
    shown = ", ".join(map(repr, items[:4])) + (" ..." if len(items) > 4 else "")
    return PluginOutputError(f"{stage}: {plugin_origin(who)} returned {what} for item(s) {shown}; "
                             "nothing was written for them")


def _nonfinite_items(t: torch.Tensor, names: Sequence[str]) -> list[str]:
    bad = ~torch.isfinite(t.detach()).flatten(1).all(1)
    return [n for n, b in zip(names, bad.tolist()) if b]


def check_cam_output(who: Any, cams: Any, labels: torch.Tensor, size: tuple[int, int], names: Sequence[str],
                     stage: str = "cams") -> torch.Tensor:
    """Check a CAM generator's ``cams`` output: a float tensor ``(B, C, H, W)`` at the image size,
    finite, in [0, 1] and zero for classes absent from ``labels`` ``(B, C)``. Returns it.

    Raises:
        PluginOutputError: naming the plugin and distribution, the items and what was wrong.
    """
    expected = (len(names), labels.shape[1], *size)
    if not isinstance(cams, torch.Tensor):
        raise _fail(who, stage, names, f"a {type(cams).__name__} instead of a tensor (B, C, H, W) = {expected}")
    if tuple(cams.shape) != expected:
        raise _fail(who, stage, names, f"CAMs of shape {tuple(cams.shape)}; expected (B, C, H, W) = {expected}")
    if not cams.is_floating_point():
        raise _fail(who, stage, names, f"CAMs of dtype {cams.dtype}; expected a floating-point tensor")
    bad = _nonfinite_items(cams, names)
    if bad:
        raise _fail(who, stage, bad, "non-finite CAMs (NaN or inf)")
    lo, hi = float(cams.min()), float(cams.max())
    if lo < -CAM_RANGE_TOLERANCE or hi > 1 + CAM_RANGE_TOLERANCE:
        out = ((cams < -CAM_RANGE_TOLERANCE) | (cams > 1 + CAM_RANGE_TOLERANCE)).flatten(1).any(1).tolist()
        raise _fail(who, stage, [n for n, b in zip(names, out) if b],
                    f"CAM values in [{lo:.4g}, {hi:.4g}]; the interface requires [0, 1]")
    absent = (labels.to(cams.device) <= 0.5)[:, :, None, None]
    leak = (cams.abs() * absent).flatten(1).amax(1) > CAM_RANGE_TOLERANCE
    if bool(leak.any()):
        raise _fail(who, stage, [n for n, b in zip(names, leak.tolist()) if b],
                    "non-zero CAMs for classes absent from the image's labels")
    return cams


def check_refiner_output(who: Any, out: Any, num_classes: int, size: tuple[int, int], names: Sequence[str],
                         stage: str = "pseudo_masks") -> torch.Tensor:
    """Check a refiner's ``refine`` output: probabilities ``(B, C + 1, H, W)`` (finite, in [0, 1]) or
    integer masks ``(B, H, W)`` with values in ``0..C`` or 255. Returns ``long (B, H, W)`` masks."""
    n = len(names)
    if not isinstance(out, torch.Tensor):
        raise _fail(who, stage, names, f"a {type(out).__name__} instead of a tensor")
    if out.is_floating_point():
        expected = (n, num_classes + 1, *size)
        if tuple(out.shape) != expected:
            raise _fail(who, stage, names, f"probabilities of shape {tuple(out.shape)}; expected (B, C + 1, H, W) = "
                        f"{expected}")
        bad = _nonfinite_items(out, names)
        if bad:
            raise _fail(who, stage, bad, "non-finite probabilities (NaN or inf)")
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise _fail(who, stage, names, f"probabilities in [{lo:.4g}, {hi:.4g}]; expected values in [0, 1]")
        return class_argmax(out)
    if tuple(out.shape) != (n, *size):
        raise _fail(who, stage, names, f"masks of shape {tuple(out.shape)}; expected (B, H, W) = {(n, *size)}")
    masks = out.long()
    wrong = (masks < 0) | ((masks > num_classes) & (masks != IGNORE_INDEX))
    if bool(wrong.any()):
        values = sorted(set(masks[wrong].unique().tolist()))[:5]
        raise _fail(who, stage, [nm for nm, b in zip(names, wrong.flatten(1).any(1).tolist()) if b],
                    f"mask values {values}; expected 0..{num_classes} or {IGNORE_INDEX}")
    return masks


def check_head_output(who: Any, probs: torch.Tensor, num_outputs: int, size: tuple[int, int], names: Sequence[str],
                      stage: str = "eval") -> torch.Tensor:
    """Check a head's (aggregated) class scores ``(B, K, H, W)``: the shape and finiteness."""
    expected = (len(names), num_outputs, *size)
    if tuple(probs.shape) != expected:
        raise _fail(who, stage, names, f"scores of shape {tuple(probs.shape)}; expected (B, K, H, W) = {expected}")
    bad = _nonfinite_items(probs, names)
    if bad:
        raise _fail(who, stage, bad, "non-finite class scores (NaN or inf)")
    return probs
