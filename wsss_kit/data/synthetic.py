"""The embedded default dataset: procedural outdoor scenes, generated on the fly (no download).

See :mod:`wsss_kit.data.synthetic_scene` for what the scenes contain and why.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_path, write_text
from ..interfaces import WSSSDataset
from ..progress import Progress
from .file_dataset import check_max_images, multi_hot
from .image_io import save_image_png, save_mask_png
from .palette import voc_colormap
from .synthetic_scene import CLASS_NAMES, Scene, render_scene
from .transforms import build_augment

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
"""Random-stream numbers of the named splits; ``pretrain`` feeds the embedded foundations' pretraining
(``python -m benchmarks pretrain``) and shares no scene with train/val/test."""
DEFAULT_NUM_IMAGES = {"train": 400, "val": 100, "test": 100}


def split_code(split: str) -> int:
    """A number per split, so that every split draws from its own random streams."""
    if split in SPLIT_CODES:
        return SPLIT_CODES[split]
    return 1000 + zlib.crc32(split.encode("utf-8"))


class SyntheticDataset(WSSSDataset):
    """Procedurally generated scenes with 5 object classes and exact ground-truth masks.

    Each item is rendered when it is read, deterministically from ``(seed, split, index)``;
    splits use disjoint random streams. Rendering a 128x128 scene takes a few milliseconds.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"pretrain"`` (the embedded foundations'
            pretraining scenes); any other name is a further split with its own stream.
        num_images: images in the split; default 400 (train), 100 (val, test, others).
        image_size: ``S`` or ``(H, W)``.
        seed: selects a different set of scenes for every split.
        augment: keyword arguments of :class:`~wsss_kit.data.transforms.TrainAugment`, or ``None``.
        max_images: keep only the first N images.

    Every split has ground-truth masks (0 background, 1..5, no ignore pixels).
    """

    wsss_api_version = "1.0"
    class_names = CLASS_NAMES
    palette = tuple(voc_colormap(len(CLASS_NAMES) + 1))

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        image_size: int | Sequence[int] = 128,
        seed: int = 0,
        augment: Mapping[str, Any] | Callable[[dict], dict] | None = None,
        max_images: int | None = None,
    ) -> None:
        if not isinstance(split, str) or not split:
            raise ValueError(f"SyntheticDataset: split must be a non-empty string, got {split!r}")
        if num_images is None:
            num_images = DEFAULT_NUM_IMAGES.get(split, 100)
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"SyntheticDataset: num_images must be a positive integer, got {num_images!r}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 32 for v in size):
            raise ValueError(f"SyntheticDataset: image_size must be an int >= 32 or (H, W), got {image_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"SyntheticDataset: seed must be a non-negative integer, got {seed!r}")
        max_images = check_max_images(max_images)
        self.split = split
        self.seed = seed
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.augment = build_augment(augment)
        count = min(num_images, max_images) if max_images else num_images
        self.names = [f"{split}_{i:05d}" for i in range(count)]

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        h, w = self.image_size
        return (f"SyntheticDataset({self.split}, seed={self.seed}): {len(self)} images of {h}x{w}, "
                f"{self.num_classes} classes")

    def scene(self, index: int) -> Scene:
        """The rendered scene of item ``index`` (image, mask, classes, and background facts)."""
        if not 0 <= index < len(self):
            raise IndexError(f"SyntheticDataset index {index} out of range for {len(self)} images")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, split_code(self.split), index]))
        return render_scene(rng, *self.image_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if -len(self) <= index < 0:
            index += len(self)
        scene = self.scene(index)
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1))),
            "labels": multi_hot([c - 1 for c in scene.classes], self.num_classes),
            "mask": torch.from_numpy(scene.mask.astype(np.int64)),
            "name": self.names[index],
        }
        return self.augment(sample) if self.augment is not None else sample

    def export(self, out_dir: str | Path, palette: bool = True) -> Path:
        """Write the split to disk in the :class:`~wsss_kit.data.folder.FolderDataset` layout.

        Writes ``images/<name>.png``, ``masks/<name>.png`` (palette PNGs, or 8-bit grey index
        PNGs with ``palette=False``), ``labels.csv`` (``name,labels`` with ``;``-separated class
        names) and ``classes.txt``, each atomically. Read it back with
        ``FolderDataset(out_dir, "classes.txt", mask_dir="masks")``.

        Returns:
            ``out_dir``.
        """
        out = Path(out_dir)
        rows = ["name,labels"]
        for index in Progress(len(self), f"exporting synthetic {self.split}").wrap(range(len(self))):
            scene = self.scene(index)
            name = self.names[index]
            save_image_png(out / "images" / f"{name}.png", (scene.image * 255.0 + 0.5).astype(np.uint8))
            if palette:
                save_mask_png(out / "masks" / f"{name}.png", scene.mask, self.palette)
            else:
                with atomic_path(out / "masks" / f"{name}.png") as tmp:
                    Image.fromarray(scene.mask).save(tmp, format="PNG")
            rows.append(f"{name}," + ";".join(self.class_names[c - 1] for c in scene.classes))
        write_text(out / "labels.csv", "\n".join(rows) + "\n")
        write_text(out / "classes.txt", "\n".join(self.class_names) + "\n")
        return out
