"""What a pretraining run leaves: the float16 weights file and its JSON record (the model card's source)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsss_kit.atomic import write_bytes, write_text
from wsss_kit.weights.packaged import packaged_state_dict
from wsss_kit.weights.released import sha256_of

__all__ = ["RECORD_KEYS", "save_half_state", "write_record"]

RECORD_KEYS = ("model", "architecture", "released_name", "recipe", "seed", "steps", "images", "batch_size",
               "threads", "device", "wall_time_s", "render_time_s", "train_time_s", "loss", "held_out",
               "weights_file", "file_size_bytes", "sha256", "parameters", "machine")
"""Keys every ``benchmarks/results/pretrain_<model>.json`` holds."""


def save_half_state(state: dict[str, Tensor], path: str | Path) -> Path:
    """Write ``state`` in the packaged format (:func:`wsss_kit.weights.packaged.packaged_state_dict`:
    floating tensors float16, others as they are) atomically; it loads with ``torch.load(weights_only=True)``.

    Equal states give equal bytes whatever the file's name (``save_packaged_state_dict`` saves to a
    temporary name, which ``torch.save`` writes into the archive), so a rerun from the same seed
    reproduces the SHA-256."""
    half = packaged_state_dict(state, source=f"pretrained weights {path}")
    buffer = io.BytesIO()  # torch.save names the archive after the file: a temp name would change the bytes
    torch.save(half, buffer)
    return write_bytes(path, buffer.getvalue())


def write_record(path: str | Path, record: dict[str, Any], weights: Path) -> dict[str, Any]:
    """Add the file's size and SHA-256 to ``record`` and write it as JSON atomically; return it."""
    record = {**record, "weights_file": weights.name, "file_size_bytes": weights.stat().st_size,
              "sha256": sha256_of(weights)}
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise KeyError(f"pretrain record {path} lacks {', '.join(missing)}")
    write_text(path, json.dumps(record, indent=2) + "\n")
    return record
