"""PASCAL VOC 2012, with the SBD-augmented ``train_aug`` split (10,582 training images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import DataError
from .file_dataset import FileDataset
from .label_files import image_stem, read_label_file
from .palette import VOC_CLASSES, voc_colormap

VOC_LAYOUT = """\
VOCdevkit/VOC2012/
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette masks (train, val)
    SegmentationClassAug/<id>.png       SBD-augmented masks (train_aug)
    ImageSets/Segmentation/{train,val,trainval,test}.txt
    ImageSets/SegmentationAug/train_aug.txt"""


def find_voc_root(root: str | Path) -> Path:
    """The ``VOC2012`` folder: ``root`` itself, or ``root/VOCdevkit/VOC2012``, or ``root/VOC2012``.

    Raises:
        DataError: none of them holds ``JPEGImages/``; the message shows the expected layout.
    """
    root = Path(root).expanduser()
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DataError(
        f"no PASCAL VOC 2012 data found at {root}: expected {root} to be the folder that contains "
        f"VOCdevkit/, or VOCdevkit/VOC2012 itself, laid out as\n{VOC_LAYOUT}"
    )


def read_split_file(path: Path) -> list[str]:
    """Image ids from a split list: one per line, either ``2007_000032`` or SBD's
    ``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png`` form."""
    ids: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = image_stem(line.split()[0])
        if name not in seen:
            seen.add(name)
            ids.append(name)
    return ids


class VOC2012Dataset(FileDataset):
    """PASCAL VOC 2012 segmentation data with image-level labels (20 classes).

    Args:
        root: the folder containing ``VOCdevkit``, or ``VOCdevkit/VOC2012`` itself.
        split: ``train_aug`` (list ``ImageSets/SegmentationAug/train_aug.txt``, masks from
            ``SegmentationClassAug``), or ``train``/``val``/``trainval``/``test`` (lists in
            ``ImageSets/Segmentation``, masks from ``SegmentationClass``). Each falls back to the
            other mask folder for a file it lacks. ``test`` has no masks: they are all 255.
        labels_from: ``"masks"`` (unique mask values minus 0 and 255, computed when an item is
            read) or ``"file"`` (needs ``label_file``; giving ``label_file`` selects it).
        label_file: JSON ``{image_id: [class names or 0-based indices]}`` or CSV
            ``image_id,class;class`` (see :mod:`wsss_kit.data.label_files`). Pickled
            ``cls_labels.npy`` files are refused because unpickling runs code; convert a trusted
            one once with::

                import json, numpy as np
                d = np.load("cls_labels.npy", allow_pickle=True).item()
                json.dump({str(k): np.flatnonzero(v).tolist() for k, v in d.items()}, open("cls_labels.json", "w"))

        split_file: a custom list of image ids (replaces the split's list; ``split`` still picks
            the mask folder).
        augment: keyword arguments of :class:`~wsss_kit.data.transforms.TrainAugment`, or ``None``.
        max_images: keep only the first N images of the list.
        allow_empty_labels: keep images without any foreground class (all-zero labels) instead
            of raising DataError.

    Without a label file, ``test`` images have unknown labels, returned as all zeros.
    """

    wsss_api_version = "1.0"
    class_names = VOC_CLASSES
    palette = tuple(voc_colormap(len(VOC_CLASSES) + 1))

    def __init__(
        self,
        root: str,
        split: str = "train_aug",
        labels_from: str = "masks",
        label_file: str | None = None,
        augment: Mapping[str, Any] | Callable[[dict], dict] | None = None,
        max_images: int | None = None,
        allow_empty_labels: bool = False,
        split_file: str | None = None,
    ) -> None:
        super().__init__(augment=augment, max_images=max_images, allow_empty_labels=allow_empty_labels)
        if labels_from not in ("masks", "file"):
            raise ValueError(f"VOC2012Dataset: labels_from must be 'masks' or 'file', got {labels_from!r}")
        if labels_from == "file" and label_file is None:
            raise ValueError("VOC2012Dataset: labels_from='file' needs label_file (a JSON or CSV label file)")
        self.root = find_voc_root(root)
        self.split = split
        self.split_file = Path(split_file).expanduser() if split_file is not None else self._default_split_file(split)
        if not self.split_file.is_file():
            raise DataError(
                f"split list {self.split_file} for split {split!r} does not exist; {self._available_splits()}")
        names = read_split_file(self.split_file)
        if not names:
            raise DataError(f"split list {self.split_file} lists no images")
        self.names = names[: self.max_images] if self.max_images else names
        self.has_masks = split != "test"
        aug, plain = self.root / "SegmentationClassAug", self.root / "SegmentationClass"
        self.mask_dirs = (aug, plain) if split == "train_aug" else (plain, aug)
        self.label_file = Path(label_file).expanduser() if label_file is not None else None
        self._labels: dict[str, list[int]] | None = None
        if self.label_file is not None:
            table = read_label_file(self.label_file, self.class_names)
            missing = [n for n in self.names if n not in table]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise DataError(f"label file {self.label_file} has no entry for {len(missing)} image(s) "
                                f"of split {split!r}: {shown}")
            self._labels = {n: table[n] for n in self.names}

    def _default_split_file(self, split: str) -> Path:
        sets = self.root / "ImageSets"
        if split == "train_aug":
            primary = sets / "SegmentationAug" / "train_aug.txt"
            alt = sets / "Segmentation" / "train_aug.txt"
            return primary if primary.is_file() or not alt.is_file() else alt
        return sets / "Segmentation" / f"{split}.txt"

    def _available_splits(self) -> str:
        found = sorted({p.stem for d in ("Segmentation", "SegmentationAug")
                        for p in (self.root / "ImageSets" / d).glob("*.txt")})
        listed = ", ".join(found) if found else "none"
        return f"split lists found under {self.root / 'ImageSets'}: {listed}; pass split_file= for a custom list"

    def describe(self) -> str:
        return f"VOC2012Dataset({self.split}): {len(self)} images, {self.num_classes} classes, root {self.root}"

    def image_file(self, index: int) -> Path:
        return self.root / "JPEGImages" / f"{self.names[index]}.jpg"

    def mask_file(self, index: int) -> Path | None:
        if not self.has_masks:
            return None
        candidates = [d / f"{self.names[index]}.png" for d in self.mask_dirs]
        for path in candidates:
            if path.is_file():
                return path
        return candidates[0]
