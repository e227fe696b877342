"""Mask folders a user brings into a run instead of computing them: ``seeds.source`` (e.g. the
released MCTformer seeds) and ``pseudo_masks.source`` (e.g. another method's pseudo masks, to
retrain a head on them).

Both take a folder of ``<name>.png`` for both splits, or ``{train: DIR, eval: DIR}`` (either may
be left out or null). The stages before a brought-in folder have nothing to do when their config
sections are absent: a config of only ``data``, ``pseudo_masks.source`` and ``head`` trains and
evaluates a head on the given masks.
"""

from __future__ import annotations

from pathlib import Path

from ..config import check_keys
from ..errors import ConfigError
from .context import SPLITS, RunContext

__all__ = ["mask_sources", "pseudo_mask_sources", "seed_sources"]


def mask_sources(ctx: RunContext, key: str) -> dict[str, Path]:
    """The config value at ``key`` (``seeds.source``, ``pseudo_masks.source``) as ``{split: folder}``."""
    source = ctx.get(key, None)
    if source is None:
        return {}
    if isinstance(source, (str, Path)):
        return {split: Path(source).expanduser() for split in SPLITS}
    if isinstance(source, dict):
        check_keys(source, SPLITS, key)
        return {split: Path(str(folder)).expanduser() for split, folder in source.items() if folder is not None}
    raise ConfigError(f"{key} must be a folder of <name>.png masks or {{train: DIR, eval: DIR}}, got {source!r}")


def seed_sources(ctx: RunContext) -> dict[str, Path]:
    """``seeds.source`` as ``{split: folder}`` (empty when the seeds are computed from CAMs)."""
    return mask_sources(ctx, "seeds.source")


def pseudo_mask_sources(ctx: RunContext) -> dict[str, Path]:
    """``pseudo_masks.source`` as ``{split: folder}``; when given, it must name the train split's
    folder (the head trains on it)."""
    sources = mask_sources(ctx, "pseudo_masks.source")
    if sources and "train" not in sources:
        raise ConfigError("pseudo_masks.source must give the train split's pseudo masks (the head trains on "
                          f"them), got only {sorted(sources)}")
    return sources
