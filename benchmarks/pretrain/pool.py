"""The pretraining data: a pool of rendered synthetic scenes held in memory, and batch augmentation.

Scenes come from the ``"pretrain"`` split of :class:`~wsss_kit.data.SyntheticDataset`, a random
stream disjoint from train/val/test of every seed. Each is rendered once (a few ms) into ``uint8``
and kept with its targets: the multi-hot tags over :data:`ATTRIBUTES` (classification pretext),
the five classes and water (held-out scoring), and, for the CLIP, ``captions_per_image`` random
captions drawn up front from a generator seeded by ``(seed, index, epoch)``, one per epoch, so each
epoch sees fresh captions and a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wsss_kit.data.captions import ATTRIBUTES, caption_scene, scene_attributes
from wsss_kit.data.synthetic import SyntheticDataset

__all__ = ["HELD_OUT", "RenderedPool", "augment_batch", "render_pool"]

HELD_OUT: tuple[tuple[str, int], ...] = (("val", 123), ("test", 7))
"""``(split, seed)`` pairs never used in pretraining, on which each run is scored."""

_CAPTION_STREAM = 0xCA9
"""Keeps caption randomness apart from scene rendering (both are seeded from the same numbers)."""


@dataclass
class RenderedPool:
    """Rendered scenes and their targets.

    Attributes:
        images: ``uint8 (N, 3, H, W)``.
        attributes: ``float32 (N, A)`` multi-hot over :data:`ATTRIBUTES`.
        classes: ``float32 (N, 5)`` multi-hot over the five classes (ball, box, kite, boat, tree).
        water: ``float32 (N,)`` 1 where the scene has a water band.
        captions: ``N`` lists of ``captions_per_image`` strings (empty lists if none were asked).
        masks: ``uint8 (N, H, W)`` class-id masks (0 background, 1..5 the classes), or ``None`` when not
            asked for (pretraining split only: cut-out views of the CLIP recipe).
    """

    images: Tensor
    attributes: Tensor
    classes: Tensor
    water: Tensor
    captions: list[list[str]]
    masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


class _Scenes(Dataset):
    def __init__(self, dataset: SyntheticDataset, captions_per_image: int, with_masks: bool = False) -> None:
        self.dataset = dataset
        self.captions_per_image = captions_per_image
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, float, list[str], Tensor | None]:
        scene = self.dataset.scene(index)
        image = torch.from_numpy(np.ascontiguousarray((scene.image * 255.0 + 0.5).astype(np.uint8).transpose(2, 0, 1)))
        tags = set(scene_attributes(scene))
        attributes = torch.tensor([1.0 if a in tags else 0.0 for a in ATTRIBUTES])
        classes = torch.zeros(len(self.dataset.class_names))
        classes[[c - 1 for c in scene.classes]] = 1.0
        captions = []
        for epoch in range(self.captions_per_image):
            rng = np.random.default_rng([self.dataset.seed, _CAPTION_STREAM, index, epoch])
            captions.append(caption_scene(scene, rng))
        mask = torch.from_numpy(scene.mask.astype(np.uint8)) if self.with_masks else None
        return image, attributes, classes, float(scene.has_water), captions, mask


def _collate(items: list[tuple[Tensor, Tensor, Tensor, float, list[str], Tensor | None]]) -> tuple:
    images, attributes, classes, water, captions, masks = zip(*items)
    stacked = torch.stack(masks) if masks[0] is not None else None
    return (torch.stack(images), torch.stack(attributes), torch.stack(classes), torch.tensor(water), list(captions),
            stacked)


def render_pool(split: str, num_images: int, seed: int, *, captions_per_image: int = 0, workers: int = 2,
                image_size: int = 128, desc: str | None = None, with_masks: bool = False) -> RenderedPool:
    """Render ``num_images`` scenes of ``SyntheticDataset(split, seed=seed)`` with ``workers`` processes.

    ``with_masks`` keeps the class-id masks too; only the ``"pretrain"`` split may ask for them (no
    pretraining reads a train/val/test mask).

    The result does not depend on ``workers`` (every scene and caption is seeded by its index).
    """
    if num_images < 1:
        raise ValueError(f"render_pool: num_images must be >= 1, got {num_images}")
    if captions_per_image < 0:
        raise ValueError(f"render_pool: captions_per_image must be >= 0, got {captions_per_image}")
    if with_masks and split != "pretrain":
        raise ValueError(f"render_pool: masks are read only from the 'pretrain' split, not {split!r}")
    dataset = SyntheticDataset(split, num_images=num_images, image_size=image_size, seed=seed)
    loader = DataLoader(_Scenes(dataset, captions_per_image, with_masks), batch_size=32, shuffle=False,
                        num_workers=max(0, workers), collate_fn=_collate)
    parts: list[tuple] = []
    with tqdm(total=num_images, desc=desc or f"rendering {split} (seed {seed})", unit="img", disable=None) as bar:
        for batch in loader:
            parts.append(batch)
            bar.update(batch[0].shape[0])
    captions = [c for part in parts for c in part[4]]
    return RenderedPool(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                        torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts]).float(), captions,
                        torch.cat([p[5] for p in parts]) if with_masks else None)


def augment_batch(images: Tensor, generator: torch.Generator, *, min_scale: float = 0.8, flip: bool = True) -> Tensor:
    """Random zoom-in crops (side ``min_scale``..1 of the image, anywhere inside it) and horizontal flips.

    Args:
        images: ``float (B, 3, H, W)``.
        generator: a CPU generator (the draws, hence the run, follow its seed).

    Returns:
        ``(B, 3, H, W)`` resampled bilinearly at the same size.
    """
    b = images.shape[0]
    scale = min_scale + (1.0 - min_scale) * torch.rand(b, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale)[:, None]
    sign = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * sign
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
