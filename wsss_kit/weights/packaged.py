"""Writing a checkpoint in the format of the files shipped with wsss_kit (``packaged`` released entries).

The format: a plain state dict (name → tensor, the model's own keys) saved with ``torch.save``,
floating-point tensors in float16 (half the size; the package ships all its weights in a few MB),
integer tensors (BatchNorm's ``num_batches_tracked``) as they are, everything on the CPU and
contiguous. :func:`~wsss_kit.weights.load_state_dict` reads it back as float32, so it loads into
float32 models through every path (``load_weights_into``, ``create_timm_model``, ``load_clip``,
the plugins' ``load_weights`` hooks).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..atomic import write_bytes
from ..errors import WeightsError
from .loading import _refuse_non_finite

__all__ = ["FLOAT16_MAX", "packaged_state_dict", "save_packaged_state_dict"]

FLOAT16_MAX = float(torch.finfo(torch.float16).max)
"""65504: a float32 value above this in magnitude would become inf in float16."""


def packaged_state_dict(model: nn.Module | Mapping[str, Any], source: str = "model") -> dict[str, Any]:
    """The state dict of ``model`` (a module or a state dict) in the packaged format: floating tensors
    float16, other tensors unchanged, all detached, on the CPU, contiguous and owning their storage.

    Raises:
        WeightsError: a tensor holds NaN/inf, or a value beyond ±65504 that float16 cannot hold
            (naming ``source``, the key and its largest magnitude).
    """
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    if not state:
        raise WeightsError(f"{source}: an empty state dict; expected the model's tensors")
    _refuse_non_finite(state, source)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            out[key] = value  # a module's extra state (plain Python data) is kept as it is
            continue
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            finite = tensor[torch.isfinite(tensor)]  # only additive masks' -inf got past the check above
            peak = float(finite.abs().max()) if finite.numel() else 0.0
            if peak > FLOAT16_MAX:
                raise WeightsError(f"{source}: tensor {key!r} holds values up to {peak:.6g} in magnitude, beyond "
                                   f"float16's {FLOAT16_MAX:g}; it cannot be shipped in float16")
            tensor = tensor.to(torch.float16)
        out[key] = tensor.contiguous().clone()  # own storage: no view drags a larger buffer into the file
    return out


def save_packaged_state_dict(model: nn.Module | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save ``model`` (a module or its state dict) to ``path`` in the packaged format, atomically.

    What ``python -m benchmarks pretrain`` writes into ``wsss_kit/pretrained/`` (the ``released:``
    entries with ``packaged=True``): see :func:`packaged_state_dict`. Keys are the model's exactly
    (an open_clip ``CLIP``'s, a timm model's with its classifier head). Equal states give equal bytes
    whatever the file's name, so a rebuild from the same seed reproduces the SHA-256. Returns the path.

    Raises:
        WeightsError: see :func:`packaged_state_dict`.
    """
    path = Path(path)
    state = packaged_state_dict(model, source=f"packaged checkpoint {path}")
    buffer = io.BytesIO()  # torch.save names the archive after its file: a temp file's name would change the bytes
    torch.save(state, buffer)
    return write_bytes(path, buffer.getvalue())
