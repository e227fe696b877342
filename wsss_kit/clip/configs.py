"""open_clip architecture configs shipped with wsss_kit (tiny test models).

The JSON files in ``wsss_kit/clip/model_configs/`` are registered with open_clip the first time
a CLIP model is built (:func:`register_model_configs`), after which open_clip knows them like its
own ``ViT-B-16``. ``wsss-tiny-clip`` is a randomly initialised 2-block ViT (patch 16, 64×64
native input, width 64) with a 2-block text transformer (width 64, the real 49408-token
vocabulary and context length 77) and a 32-d joint embedding: it has the structure of CLIP
ViT-B/16 at a size that builds in milliseconds, for tests and the embedded demo.
"""

from __future__ import annotations

import threading
from pathlib import Path

__all__ = ["CONFIG_DIR", "TINY_CLIP", "register_model_configs"]

CONFIG_DIR = Path(__file__).parent / "model_configs"
"""Folder of the shipped open_clip model configs (package data)."""

TINY_CLIP = "wsss-tiny-clip"
"""Name of the tiny test architecture (vision width 64, 2 blocks, patch 16; text width 64; E = 32)."""

_registered = False
_lock = threading.Lock()


def register_model_configs() -> list[str]:
    """Make open_clip aware of the configs in :data:`CONFIG_DIR` (idempotent); return their names."""
    global _registered
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    with _lock:
        if not _registered:
            import open_clip

            if any(n not in open_clip.list_models() for n in names):
                open_clip.add_model_config(CONFIG_DIR)
            _registered = True
    return names
