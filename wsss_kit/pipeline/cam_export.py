"""Writing CAM files (and seed masks) for the items of a dataset: the loop shared by the pipeline's
``cams`` stage and ``wsss cam``.

For every item: ``cam_dir/<name>.npz`` (see :func:`~wsss_kit.data.artifacts.save_cams`) and,
when asked, ``seed_dir/<name>.png``, the seed mask of the CAMs *as stored* (float16) at a background
threshold. Resumable: an item whose files all exist is skipped (every write is atomic, so an
existing file is complete), a missing seed next to an existing CAM file is made from that file
without running the network, and an existing file is never rewritten. :func:`record_settings`
keeps a resumed folder from mixing files made with other weights or thresholds (``wsss cam``; the
pipeline has its manifest for that).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from ..atomic import write_text
from ..data.artifacts import load_cams, save_cams
from ..data.image_io import save_mask_png
from ..errors import ConfigError, DataError
from ..interfaces import CAMGenerator, WSSSDataset, cams_to_seeds
from ..progress import Progress
from .items import item_names, same_size_batches
from .outputs import check_cam_output


@dataclasses.dataclass
class ExportCounts:
    """What :func:`export_cams` did with the items it was given."""

    computed: int = 0
    """CAMs computed with the network (and their seeds, when asked)."""
    seeded: int = 0
    """Seeds made from CAM files that already existed."""
    skipped: int = 0
    """Items whose outputs all existed."""


def check_labels(sample: Mapping[str, Any], where: str) -> None:
    """Raise :class:`DataError` naming the image when its label set ``(C,)`` is empty."""
    if not bool((torch.as_tensor(sample["labels"]) > 0).any()):
        raise DataError(
            f"image {sample['name']!r} of {where} has no foreground label: a CAM is computed only for "
            "the classes present in an image, so there is nothing to compute for it; remove it from "
            "the split (e.g. from its label file) or give it its classes"
        )


def write_seed(cams: torch.Tensor, seed_path: Path, threshold: float,
               palette: Sequence[Sequence[int]] | None) -> None:
    """Write the seed mask of CAMs ``(C, H, W)`` at ``threshold`` as a palette PNG ``(H, W)``."""
    save_mask_png(seed_path, cams_to_seeds(cams[None], threshold)[0], palette)


def seed_from_cam_file(cam_path: Path, seed_path: Path, num_classes: int, threshold: float,
                       palette: Sequence[Sequence[int]] | None) -> None:
    """Write the seed mask of the CAM file ``cam_path`` (``C = num_classes``) at ``threshold``."""
    write_seed(load_cams(cam_path, num_classes), seed_path, threshold, palette)


def export_cams(
    model: CAMGenerator | None,
    dataset: WSSSDataset,
    indices: Iterable[int],
    cam_dir: Path,
    *,
    seed_dir: Path | None = None,
    threshold: float | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    batch_size: int = 1,
    palette: Sequence[Sequence[int]] | None = None,
    device: torch.device | str = "cpu",
    compress: bool = False,
    desc: str = "CAMs",
    where: str = "the dataset",
) -> ExportCounts:
    """Write the CAMs (and seeds) of ``dataset[i]`` for ``i`` in ``indices``, skipping existing ones.

    Args:
        model: a CAM generator on ``device`` in eval mode; ``model.cams(images (B, 3, H, W),
            labels (B, C), scales=, flip=)`` gives ``(B, C, H, W)``. May be ``None`` when every
            CAM file already exists (then only seeds are made, from the files).
        dataset: un-augmented samples ``{"image" (3, H, W), "labels" (C,), "name"}``.
        indices: the items to handle (e.g. one shard's).
        cam_dir: folder of the ``<name>.npz`` CAM files.
        seed_dir: folder of the ``<name>.png`` seeds, or ``None`` for no seeds.
        threshold: background threshold of the seeds (needed with ``seed_dir``).
        scales, flip: CAM inference scales and horizontal flip.
        batch_size: images per network call (consecutive items of one image size).
        palette: seed PNG colours (value 0..C → RGB).
        device: where images and labels go.
        compress: write CAM files with ``np.savez_compressed``.
        desc: progress bar title.
        where: the dataset's config key, for errors (``"data.train"``).

    Raises:
        DataError: an item to compute has an empty label set (checked before the network runs).
    """
    if seed_dir is not None and threshold is None:
        raise ValueError("export_cams: seeds (seed_dir) need a background threshold")
    names = item_names(dataset)
    counts = ExportCounts()
    to_compute: list[int] = []
    to_seed: list[int] = []
    for i in indices:
        if not (cam_dir / f"{names[i]}.npz").exists():
            to_compute.append(i)
        elif seed_dir is not None and not (seed_dir / f"{names[i]}.png").exists():
            to_seed.append(i)
        else:
            counts.skipped += 1
    if to_compute and model is None:
        raise ValueError(f"export_cams: {len(to_compute)} CAM files are missing but no model was given")
    with Progress(len(to_compute) + len(to_seed), desc) as bar:
        for i in to_seed:
            assert seed_dir is not None and threshold is not None
            seed_from_cam_file(cam_dir / f"{names[i]}.npz", seed_dir / f"{names[i]}.png", dataset.num_classes,
                               threshold, palette)
            counts.seeded += 1
            bar.update(1)
        for batch in same_size_batches(dataset, to_compute, batch_size):
            assert model is not None
            for sample in batch:
                check_labels(sample, where)
            images = torch.stack([s["image"] for s in batch]).to(device)
            labels = torch.stack([torch.as_tensor(s["labels"]) for s in batch])
            with torch.no_grad():
                cams = model.cams(images, labels.to(device), scales=tuple(scales), flip=flip)
            check_cam_output(model, cams, labels, (images.shape[-2], images.shape[-1]), [s["name"] for s in batch],
                             stage=f"CAMs of {where}")
            for sample, cam, label in zip(batch, cams, labels):
                stored = save_cams(cam_dir / f"{sample['name']}.npz", cam, label, compress=compress)
                seed_path = None if seed_dir is None else seed_dir / f"{sample['name']}.png"
                if seed_path is not None and not seed_path.exists():
                    assert threshold is not None
                    write_seed(stored, seed_path, threshold, palette)
            counts.computed += len(batch)
            bar.update(len(batch))
    return counts


SETTINGS_FILE = "settings.json"
"""Written into an output folder by :func:`record_settings`."""


def record_settings(folder: Path, settings: Mapping[str, Any], what: str) -> None:
    """Make sure every file in ``folder`` is made with the same ``settings`` (JSON values).

    The first call writes ``folder/settings.json``; later calls (a resumed run, other shards)
    compare with it, so that resuming never mixes outputs of different weights or thresholds.

    Raises:
        ConfigError: the folder's files were made with other settings; names the differences.
    """
    path = folder / SETTINGS_FILE
    now = json.loads(json.dumps(settings, sort_keys=True))
    if path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); delete {folder} to recompute its files") from None
        diff = [f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]
        if diff:
            raise ConfigError(f"the {what} in {folder} were made with other settings ({'; '.join(diff)}); "
                              f"delete that folder to recompute them, or write elsewhere with --out")
        return
    old = sum(1 for f in folder.iterdir() if f.suffix in (".npz", ".png")) if folder.is_dir() else 0
    if old:
        print(f"note: {folder} already holds {old} files with no record of their settings; they are kept as they are")
    write_text(path, json.dumps(now, indent=2, sort_keys=True) + "\n")


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and values): the identity of its weights.
    A module's extra state (``*._extra_state``, e.g. class names) enters as sorted JSON."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if not isinstance(value, torch.Tensor):
            digest.update(f"{key}|{json.dumps(value, sort_keys=True, default=str)}|".encode())
            continue
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{tensor.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
