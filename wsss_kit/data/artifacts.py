"""Artifact files that pipeline stages exchange and plugins read: CAM arrays, palette PNG masks,
and datasets over them.

Stages talk only through these files, so any stage can start from files a user brings: CAMs as
``<name>.npz`` (``cams``: float16 ``(n, H, W)`` for the ``n`` present classes, ``classes``: their
0-based foreground indices; plain or compressed ``np.savez``), masks as palette PNGs ``<name>.png``
with values 0..C and 255.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import atomic_path
from ..errors import CorruptArtifactError, DataError
from ..interfaces import WSSSDataset
from .image_io import read_mask

__all__ = ["MaskTargetDataset", "load_cams", "read_mask_artifact", "save_cams"]


def save_cams(path: str | Path, cams: torch.Tensor, labels: torch.Tensor, compress: bool = False) -> torch.Tensor:
    """Save one image's CAMs ``(C, H, W)`` keeping only the classes present in ``labels`` ``(C,)``.

    ``compress`` writes with ``np.savez_compressed`` (smaller, slower); :func:`load_cams` reads
    both. Returns what :func:`load_cams` will read back: float32 ``(C, H, W)`` on the CPU, the
    present classes rounded to float16, zeros elsewhere (seeds made from it match the file's).
    """
    present = torch.nonzero(labels.detach().cpu() > 0.5).flatten()
    arr = cams.detach().float().cpu()[present].numpy().astype(np.float16)
    writer = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh, cams=arr, classes=present.numpy().astype(np.int64))
    stored = torch.zeros(cams.shape, dtype=torch.float32)
    stored[present] = torch.from_numpy(arr.astype(np.float32))
    return stored


def load_cams(path: str | Path, num_classes: int) -> torch.Tensor:
    """Load CAMs saved by :func:`save_cams` as float32 ``(C, H, W)`` (zeros for absent classes)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arr, classes = data["cams"], data["classes"]
    except FileNotFoundError:
        raise DataError(f"CAM file {path} does not exist") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CorruptArtifactError(f"CAM file {path} cannot be read as a wsss_kit CAM archive (arrays 'cams' "
                                   f"and 'classes'; truncated or damaged?): {type(exc).__name__}: {exc}",
                                   path) from None
    if arr.ndim != 3 or classes.ndim != 1 or len(classes) != arr.shape[0]:
        raise CorruptArtifactError(f"CAM file {path}: 'cams' has shape {arr.shape} for {len(classes)} classes", path)
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise CorruptArtifactError(f"CAM file {path}: class indices {classes.tolist()} outside "
                                   f"0..{num_classes - 1}", path)
    if not np.isfinite(arr).all() or (arr.size and (arr.min() < -1e-3 or arr.max() > 1 + 1e-3)):
        raise CorruptArtifactError(f"CAM file {path}: values must be finite and in [0, 1]", path)
    out = torch.zeros(num_classes, *arr.shape[1:], dtype=torch.float32)
    out[torch.from_numpy(classes)] = torch.from_numpy(arr.astype(np.float32))
    return out


def read_mask_artifact(path: str | Path, num_classes: int, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG the run itself wrote (seeds, pseudo masks, predictions): as
    :func:`~wsss_kit.data.image_io.read_mask`, but a file that exists and cannot be read or has the
    wrong size or values is a :class:`CorruptArtifactError` (the runner recomputes it)."""
    path = Path(path)
    try:
        return read_mask(path, num_classes, expected_size=expected_size)
    except DataError as exc:
        if not path.exists():
            raise
        raise CorruptArtifactError(str(exc), path) from None
    except (OSError, ValueError, EOFError) as exc:
        if not path.exists():
            raise DataError(f"mask {path} does not exist") from None
        raise CorruptArtifactError(f"mask {path} cannot be read (truncated or damaged?): "
                                   f"{type(exc).__name__}: {exc}", path) from None


class MaskTargetDataset(Dataset):
    """Wraps a dataset and adds ``target``: the mask ``<mask_dir>/<name>.png`` (e.g. pseudo masks).

    The base dataset must be built without augmentation; ``augment`` (a callable on the sample
    dict, e.g. :class:`wsss_kit.data.transforms.TrainAugment`) is applied after ``target`` is added
    so image and target stay aligned.
    """

    def __init__(self, base: WSSSDataset, mask_dir: str | Path, augment: Any = None) -> None:
        self.base = base
        self.mask_dir = Path(mask_dir)
        self.augment = augment
        if not self.mask_dir.is_dir():
            raise DataError(f"mask folder {self.mask_dir} does not exist")

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        sample = dict(self.base[index])
        h, w = sample["image"].shape[-2:]
        path = self.mask_dir / f"{sample['name']}.png"
        if not path.exists():
            raise DataError(f"mask {path} is missing for image {sample['name']!r} (expected in {self.mask_dir})")
        mask = read_mask_artifact(path, self.base.num_classes, expected_size=(h, w))
        sample["target"] = torch.from_numpy(np.asarray(mask, dtype=np.int64))
        if self.augment is not None:
            sample = self.augment(sample)
        return sample
