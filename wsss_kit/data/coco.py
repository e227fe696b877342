"""MS-COCO 2014 with semantic masks made from the instance annotations (80 classes)."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import DataError
from ..progress import Progress
from .checks import DataProblem
from .coco_masks import semantic_mask
from .file_dataset import FileDataset
from .image_io import save_mask_png
from .palette import COCO_CATEGORY_IDS, COCO_CLASSES, voc_colormap

COCO_LAYOUT = """\
<root>/
    train2014/COCO_train2014_<12-digit id>.jpg     (or <root>/images/train2014/)
    val2014/COCO_val2014_<12-digit id>.jpg
    annotations/instances_train2014.json
    annotations/instances_val2014.json
    mask/train2014/COCO_train2014_<id>.png         (only for masks="png")"""

_CLASS_OF_CATEGORY = {cat: i + 1 for i, cat in enumerate(COCO_CATEGORY_IDS)}


def coco_image_dir(root: Path, split: str) -> Path:
    """``root/{split}2014`` or ``root/images/{split}2014``; DataError with the layout otherwise."""
    for candidate in (root / f"{split}2014", root / "images" / f"{split}2014"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"no COCO {split}2014 images at {root / f'{split}2014'}; expected the layout\n{COCO_LAYOUT}")


def load_coco_annotations(path: Path) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """Read ``instances_*.json`` into (images sorted by file name, annotations per image id).

    Each kept annotation is ``{"id", "class" (1..80), "iscrowd", "area", "segmentation"}``.

    Raises:
        DataError: the file is missing or not valid COCO JSON, or uses a category id that is not
            one of the 80 COCO categories.
    """
    if not path.is_file():
        raise DataError(f"COCO annotation file {path} does not exist; expected the layout\n{COCO_LAYOUT}")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        images = sorted(data["images"], key=lambda im: im["file_name"])
        raw_annotations = data.get("annotations", [])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"COCO annotation file {path} could not be read: {type(exc).__name__}: {exc}") from None
    per_image: dict[int, list[dict[str, Any]]] = {}
    for ann in raw_annotations:
        cat = ann.get("category_id")
        if cat not in _CLASS_OF_CATEGORY:
            raise DataError(
                f"COCO annotation file {path}: annotation {ann.get('id', '?')} has category_id {cat!r}, "
                f"which is not one of the 80 COCO categories (ids {COCO_CATEGORY_IDS[0]}..{COCO_CATEGORY_IDS[-1]})"
            )
        per_image.setdefault(int(ann["image_id"]), []).append({
            "id": ann.get("id"),
            "class": _CLASS_OF_CATEGORY[cat],
            "iscrowd": int(ann.get("iscrowd", 0)),
            "area": float(ann.get("area", 0.0)),
            "segmentation": ann.get("segmentation", []),
        })
    return images, per_image


class COCO2014Dataset(FileDataset):
    """MS-COCO 2014 (``train`` 82,783 / ``val`` 40,504 images) with image-level labels.

    Args:
        root: folder holding ``train2014/``, ``val2014/`` and ``annotations/`` (layout below).
        split: ``"train"`` or ``"val"``.
        masks: ``"json"`` builds each semantic mask from ``instances_{split}2014.json`` when the
            item is read (values 1..80 in :data:`COCO_CLASSES` order, crowd regions 255);
            ``"png"`` reads masks converted beforehand (:func:`convert_coco_masks`) from
            ``mask_dir``. With ``"png"`` and no annotation file, images are listed from the image
            folder and labels come from the masks.
        mask_dir: folder of ``<image name>.png`` masks for ``masks="png"``; default
            ``root/mask/{split}2014``.
        augment: keyword arguments of :class:`~wsss_kit.data.transforms.TrainAugment`, or ``None``.
        max_images: keep only the first N images (sorted by file name).
        allow_empty_labels: keep images without annotations (all-zero labels) instead of raising
            DataError when they are read.
        skip_empty: leave images without annotations out of the dataset (about 700 in train2014).

    Labels are the categories of all of an image's annotations, crowd ones included.

    Layout::

        {layout}
    """

    wsss_api_version = "1.0"
    class_names = COCO_CLASSES
    labels_may_exceed_mask = True  # crowd-only classes are labelled but painted 255 in the mask
    palette = tuple(voc_colormap(len(COCO_CLASSES) + 1))

    def __init__(
        self,
        root: str,
        split: str = "train",
        masks: str = "json",
        mask_dir: str | None = None,
        augment: Mapping[str, Any] | Callable[[dict], dict] | None = None,
        max_images: int | None = None,
        allow_empty_labels: bool = False,
        skip_empty: bool = False,
    ) -> None:
        super().__init__(augment=augment, max_images=max_images, allow_empty_labels=allow_empty_labels)
        if masks not in ("json", "png"):
            raise ValueError(f"COCO2014Dataset: masks must be 'json' or 'png', got {masks!r}")
        self.root = Path(root).expanduser()
        self.split = split
        self.masks = masks
        self.image_dir = coco_image_dir(self.root, split)
        self.annotation_file = self.root / "annotations" / f"instances_{split}2014.json"
        self.mask_dir = Path(mask_dir).expanduser() if mask_dir else self.root / "mask" / f"{split}2014"
        if masks == "png" and not self.mask_dir.is_dir():
            raise DataError(
                f"COCO mask folder {self.mask_dir} does not exist; create it with "
                f"wsss_kit.data.convert_coco_masks(root, {split!r}) or pass mask_dir="
            )
        self._annotations: dict[str, list[dict[str, Any]]] | None = None
        self._sizes: dict[str, tuple[int, int]] = {}
        if masks == "json" or self.annotation_file.is_file():
            images, per_image = load_coco_annotations(self.annotation_file)
            if skip_empty:
                images = [im for im in images if per_image.get(int(im["id"]))]
            images = images[: self.max_images] if self.max_images else images
            self.names = [Path(im["file_name"]).stem for im in images]
            self._files = [im["file_name"] for im in images]
            self._annotations = {n: per_image.get(int(im["id"]), []) for n, im in zip(self.names, images)}
            self._sizes = {n: (int(im["height"]), int(im["width"])) for n, im in zip(self.names, images)}
        else:
            files = sorted(p.name for p in self.image_dir.glob("*.jpg"))
            files = files[: self.max_images] if self.max_images else files
            self._files = files
            self.names = [Path(f).stem for f in files]
        if not self.names:
            raise DataError(f"COCO {split}2014 at {self.root} has no images")

    def describe(self) -> str:
        return f"COCO2014Dataset({self.split}, masks={self.masks}): {len(self)} images, {self.num_classes} classes"

    def image_file(self, index: int) -> Path:
        return self.image_dir / self._files[index]

    def mask_file(self, index: int) -> Path | None:
        return self.annotation_file if self.masks == "json" else self.mask_dir / f"{self.names[index]}.png"

    def label_indices(self, index: int) -> list[int] | None:
        if self._annotations is None:
            return None
        return sorted({a["class"] - 1 for a in self._annotations[self.names[index]]})

    def label_source(self, index: int) -> str:
        if self._annotations is not None:
            return f"the annotations in {self.annotation_file} (the image has none)"
        return super().label_source(index)

    def _json_size_problem(self, index: int, size: tuple[int, int] | None) -> str | None:
        h, w = self._sizes[self.names[index]]
        if size is not None and tuple(size) != (h, w):
            return f"image {self.image_file(index)} is {size[0]}x{size[1]} but {self.annotation_file} says {h}x{w}"
        return None

    def _json_mask(self, index: int) -> np.ndarray:
        name = self.names[index]
        h, w = self._sizes[name]
        try:
            return semantic_mask(self._annotations[name], h, w).astype(np.int64)  # type: ignore[index]
        except DataError as exc:
            raise DataError(f"{self.annotation_file}, image {name}: {exc}") from None

    def load_mask(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        if self.masks != "json":
            return super().load_mask(index, size)
        problem = self._json_size_problem(index, size)
        if problem:
            raise DataError(problem)
        return self._json_mask(index)

    def inspect_mask(self, index: int, size: tuple[int, int] | None) -> tuple[np.ndarray | None, list[DataProblem]]:
        if self.masks != "json":
            return super().inspect_mask(index, size)
        name, source = self.names[index], str(self.annotation_file)
        problems = []
        problem = self._json_size_problem(index, size)
        if problem:
            problems.append(DataProblem(name, source, "mask_size", problem))
        try:
            return self._json_mask(index), problems
        except DataError as exc:
            return None, problems + [DataProblem(name, source, "unreadable_mask", str(exc))]

if COCO2014Dataset.__doc__:
    COCO2014Dataset.__doc__ = COCO2014Dataset.__doc__.replace("{layout}", COCO_LAYOUT.replace("\n", "\n        "))


def _write_mask(job: tuple[list[dict[str, Any]], int, int, str]) -> None:
    annotations, h, w, out = job
    save_mask_png(out, semantic_mask(annotations, h, w), voc_colormap(256))


def convert_coco_masks(root: str, split: str = "train", out_dir: str | None = None, workers: int = 0) -> int:
    """Write every image's semantic mask of ``instances_{split}2014.json`` as a palette PNG.

    Files are ``out_dir/<image name>.png`` (default ``root/mask/{split}2014``), written
    atomically; existing files are skipped, so an interrupted conversion resumes.

    Args:
        workers: processes to use; 0 converts in this process.

    Returns:
        the number of masks written.

    Raises:
        DataError: the annotation file is missing or malformed.
    """
    root_path = Path(root).expanduser()
    out = Path(out_dir).expanduser() if out_dir else root_path / "mask" / f"{split}2014"
    images, per_image = load_coco_annotations(root_path / "annotations" / f"instances_{split}2014.json")
    jobs = []
    for im in images:
        target = out / f"{Path(im['file_name']).stem}.png"
        if not target.exists():
            jobs.append((per_image.get(int(im["id"]), []), int(im["height"]), int(im["width"]), str(target)))
    out.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(jobs), f"COCO {split}2014 masks")
    if workers and workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_write_mask, jobs, chunksize=16):
                bar.update()
    else:
        for job in jobs:
            _write_mask(job)
            bar.update()
    bar.close()
    return len(jobs)
