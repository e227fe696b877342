"""Artifact files that stages exchange: CAM arrays, palette PNG masks, and datasets over them.

Stages talk only through these files, so any stage can start from files a user brings: CAMs as
``<name>.npz`` (``cams``: float16 ``(n, H, W)`` for the ``n`` present classes, ``classes``: their
0-based foreground indices; plain or compressed ``np.savez``), masks as palette PNGs ``<name>.png``
with values 0..C and 255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import atomic_path
from ..errors import DataError
from ..interfaces import WSSSDataset


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
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"CAM file {path} is not a wsss_kit CAM archive (expected arrays 'cams' and "
                        f"'classes'): {exc}") from None
    if arr.ndim != 3 or len(classes) != arr.shape[0]:
        raise DataError(f"CAM file {path}: 'cams' has shape {arr.shape} for {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise DataError(f"CAM file {path}: class indices {classes.tolist()} outside 0..{num_classes - 1}")
    out = torch.zeros(num_classes, *arr.shape[1:], dtype=torch.float32)
    out[torch.from_numpy(classes)] = torch.from_numpy(arr.astype(np.float32))
    return out


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
        from ..data.image_io import read_mask

        sample = dict(self.base[index])
        h, w = sample["image"].shape[-2:]
        path = self.mask_dir / f"{sample['name']}.png"
        if not path.exists():
            raise DataError(f"mask {path} is missing for image {sample['name']!r} (expected in {self.mask_dir})")
        mask = read_mask(path, self.base.num_classes, expected_size=(h, w))
        sample["target"] = torch.from_numpy(np.asarray(mask, dtype=np.int64))
        if self.augment is not None:
            sample = self.augment(sample)
        return sample
