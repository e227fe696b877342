"""Your own images: a folder of images plus a label file (and optional masks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import DataError
from .file_dataset import FileDataset
from .label_files import IMAGE_EXTENSIONS, read_label_file
from .palette import voc_colormap


def read_class_names(class_names: Sequence[str] | str, root: Path) -> tuple[str, ...]:
    """Validate a list of class names, or read one name per line from a text file (relative to ``root``)."""
    if isinstance(class_names, str):
        path = Path(class_names).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DataError(
                f"class_names {class_names!r} is a string, so it is read as a file of class names "
                f"(one per line), but {path} does not exist; pass a list of names instead"
            )
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        where = f"class name file {path}"
    else:
        names = list(class_names)
        where = "class_names"
    if not names:
        raise DataError(f"{where}: at least one foreground class name is needed")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise DataError(f"{where}: class names must be non-empty strings, got {bad!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"{where}: duplicate class names {dupes!r}")
    if "background" in (n.lower() for n in names):
        raise DataError(f"{where}: list foreground classes only; background is implicit (mask value 0)")
    return tuple(n.strip() for n in names)


class FolderDataset(FileDataset):
    """Images in a folder, image-level labels in a CSV or JSON file, masks optional.

    Layout::

        root/
            images/<name>.jpg|png|...      (image_dir)
            labels.csv                     name,labels   e.g.  "img001,cat;dog"   (labels)
            masks/<name>.png               palette/index PNGs, optional (mask_dir)

    Args:
        root: the dataset folder.
        class_names: the foreground class names (mask value ``i + 1`` is ``class_names[i]``), or
            the name of a text file in ``root`` with one name per line (e.g. ``"classes.txt"``).
        labels: label file relative to ``root``: CSV ``name,labels`` (classes separated by ``;``
            or spaces, as names or 0-based indices, optional header) or JSON ``{name: [classes]}``
            (see :mod:`wsss_kit.data.label_files`). Its rows give the dataset order. ``None``
            lists every image in ``image_dir`` (sorted) and takes labels from the masks.
        image_dir: image folder relative to ``root``.
        mask_dir: mask folder relative to ``root`` (``<name>.png``), or ``None`` (masks all 255).
        augment: keyword arguments of :class:`~wsss_kit.data.transforms.TrainAugment`, or ``None``.
        max_images: keep only the first N images.
        allow_empty_labels: keep images with no class instead of raising DataError when read.

    Raises:
        DataError: a malformed label file (naming the line/entry and listing the valid class
            names), a listed image that is not in ``image_dir``, or a missing folder.
    """

    wsss_api_version = "1.0"

    def __init__(
        self,
        root: str,
        class_names: Sequence[str] | str,
        labels: str | None = "labels.csv",
        image_dir: str = "images",
        mask_dir: str | None = None,
        augment: Mapping[str, Any] | Callable[[dict], dict] | None = None,
        max_images: int | None = None,
        allow_empty_labels: bool = False,
    ) -> None:
        super().__init__(augment=augment, max_images=max_images, allow_empty_labels=allow_empty_labels)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} does not exist")
        self.class_names = read_class_names(class_names, self.root)
        self.palette = tuple(voc_colormap(len(self.class_names) + 1))
        self.image_dir = self.root / image_dir
        if not self.image_dir.is_dir():
            raise DataError(f"image folder {self.image_dir} does not exist (image_dir={image_dir!r})")
        self.mask_dir = self.root / mask_dir if mask_dir is not None else None
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise DataError(f"mask folder {self.mask_dir} does not exist (mask_dir={mask_dir!r})")
        files_by_stem: dict[str, list[str]] = {}
        for p in sorted(self.image_dir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                files_by_stem.setdefault(p.stem, []).append(p.name)

        self.label_file = None
        self._labels: dict[str, list[int]] | None = None
        if labels is None:
            if self.mask_dir is None:
                raise DataError("FolderDataset: labels=None takes labels from the masks, so mask_dir is required")
            names = sorted(files_by_stem)
        else:
            self.label_file = self.root / labels
            self._labels = read_label_file(self.label_file, self.class_names)
            names = list(self._labels)
        if self.max_images:
            names = names[: self.max_images]
        if not names:
            raise DataError(
                f"FolderDataset at {self.root} has no images ({self.label_file or self.image_dir} lists none)")
        missing = [n for n in names if n not in files_by_stem]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise DataError(
                f"{self.label_file} lists {len(missing)} image(s) with no file in {self.image_dir}: {shown} "
                f"(looked for <name> with extension {', '.join(IMAGE_EXTENSIONS)})"
            )
        ambiguous = [n for n in names if len(files_by_stem[n]) > 1]
        if ambiguous:
            raise DataError(
                f"image {ambiguous[0]!r} matches several files in {self.image_dir}: "
                f"{', '.join(files_by_stem[ambiguous[0]])}; keep one"
            )
        self.names = names
        self._files = [files_by_stem[n][0] for n in names]

    def describe(self) -> str:
        return f"FolderDataset({self.root}): {len(self)} images, {self.num_classes} classes"

    def image_file(self, index: int) -> Path:
        return self.image_dir / self._files[index]

    def mask_file(self, index: int) -> Path | None:
        return None if self.mask_dir is None else self.mask_dir / f"{self.names[index]}.png"
