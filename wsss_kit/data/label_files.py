"""Image-level label files: JSON or CSV mapping an image id to its foreground classes.

Accepted formats (classes may be given by name or by 0-based foreground index):

* JSON object: ``{"2007_000032": ["aeroplane", "person"], "2007_000039": [19]}``; a value may
  also be one string ``"aeroplane;person"``.
* JSON list: ``[{"name": "2007_000032", "labels": ["aeroplane", "person"]}, ...]``.
* CSV: ``image_id,class;class`` per line, classes separated by ``;`` or by spaces (use ``;``
  when a class name contains a space); an optional header row ``name,labels``; blank lines and
  lines starting with ``#`` are skipped.

Pickled NumPy files (``cls_labels.npy``) are refused: loading a pickle runs arbitrary code.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")

_HEADER_FIRST_FIELDS = {"name", "image", "image_id", "id", "filename", "file"}

NPY_CONVERSION = (
    "import json, numpy as np\n"
    "d = np.load('cls_labels.npy', allow_pickle=True).item()  # only for files you trust\n"
    "json.dump({str(k): np.flatnonzero(v).tolist() for k, v in d.items()}, open('cls_labels.json', 'w'))"
)
"""Three lines that turn a trusted pickled ``{image_id: multi-hot}`` .npy file into a JSON label file."""


def image_stem(name: str) -> str:
    """``"dir/2007_000032.jpg"`` → ``"2007_000032"``; names without an image extension are kept whole."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    return root if ext.lower() in IMAGE_EXTENSIONS else base


def _class_hint(class_names: Sequence[str]) -> str:
    return f"valid class names: {', '.join(class_names)} (or 0-based indices 0..{len(class_names) - 1})"


def parse_class(token: Any, class_names: Sequence[str], where: str) -> int:
    """A class name or 0-based index → 0-based foreground index, or DataError naming ``where``."""
    if isinstance(token, bool):
        raise DataError(f"{where}: label {token!r} is neither a class name nor an index; {_class_hint(class_names)}")
    if isinstance(token, int) or (
            isinstance(token, str) and token.strip().isdigit() and token.strip() not in class_names):
        index = int(token)
        if not 0 <= index < len(class_names):
            raise DataError(
                f"{where}: class index {index} is out of range 0..{len(class_names) - 1} "
                f"(indices are 0-based over the foreground classes); {_class_hint(class_names)}"
            )
        return index
    if isinstance(token, str):
        text = token.strip()
        if text in class_names:
            return list(class_names).index(text)
        lowered = [c.lower() for c in class_names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        close = difflib.get_close_matches(text, list(class_names), n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise DataError(f"{where}: unknown class {text!r}{hint}; {_class_hint(class_names)}")
    raise DataError(
        f"{where}: label {token!r} ({type(token).__name__}) is neither a class name nor an index; "
        f"{_class_hint(class_names)}"
    )


def split_label_field(field: str, class_names: Sequence[str]) -> list[str]:
    """Split ``"cat;dog"`` or ``"cat dog"`` into tokens; a whole field that is one class name stays whole."""
    field = field.strip()
    if not field:
        return []
    if ";" in field:
        return [t for t in (p.strip() for p in field.split(";")) if t]
    if field in class_names or field.lower() in (c.lower() for c in class_names):
        return [field]
    return field.split()


def read_label_file(path: str | os.PathLike[str], class_names: Sequence[str]) -> dict[str, list[int]]:
    """Read a JSON or CSV label file into ``{image id: sorted 0-based class indices}``.

    Image ids lose an image extension (``a.jpg`` → ``a``). See the module docstring for formats.

    Raises:
        DataError: the file is missing, a pickled .npy/.pkl, malformed, names an unknown class or
            an out-of-range index (naming the line or entry and listing the valid class names),
            or lists an image twice.
    """
    path = Path(path)
    if path.suffix.lower() in (".npy", ".npz", ".pkl", ".pickle"):
        raise DataError(
            f"label file {path}: pickled NumPy/pickle label files are not supported, because loading a "
            f"pickle can run arbitrary code; convert it once to JSON (for a file you trust):\n{NPY_CONVERSION}"
        )
    if not path.is_file():
        raise DataError(f"label file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"label file {path} could not be read as UTF-8 text: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        return _read_json(path, text, class_names)
    return _read_csv(path, text, class_names)


def _add(out: dict[str, list[int]], name: str, tokens: Sequence[Any], class_names: Sequence[str], where: str) -> None:
    key = image_stem(str(name).strip())
    if not key:
        raise DataError(f"{where}: empty image name")
    if key in out:
        raise DataError(f"{where}: image {key!r} is listed more than once")
    out[key] = sorted({parse_class(t, class_names, f"{where} (image {key!r})") for t in tokens})


def _read_json(path: Path, text: str, class_names: Sequence[str]) -> dict[str, list[int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"label file {path} is not valid JSON: {exc}") from None
    out: dict[str, list[int]] = {}
    if isinstance(data, dict):
        entries = [(str(k), v, f"label file {path}, entry {k!r}") for k, v in data.items()]
    elif isinstance(data, list):
        entries = []
        for i, item in enumerate(data):
            where = f"label file {path}, item {i}"
            if not isinstance(item, dict) or "name" not in item or "labels" not in item:
                raise DataError(f"{where}: expected an object with 'name' and 'labels', got {item!r}")
            entries.append((str(item["name"]), item["labels"], where))
    else:
        raise DataError(f"label file {path}: expected a JSON object {{image_id: [classes]}}, got {type(data).__name__}")
    for name, value, where in entries:
        if isinstance(value, str):
            tokens: list[Any] = split_label_field(value, class_names)
        elif isinstance(value, int) and not isinstance(value, bool):
            tokens = [value]
        elif isinstance(value, list):
            tokens = value
        else:
            raise DataError(
                f"{where}: expected a list of class names or indices, got {value!r}; {_class_hint(class_names)}")
        _add(out, name, tokens, class_names, where)
    return out


def _read_csv(path: Path, text: str, class_names: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    first_data_row = True
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"label file {path}, line {line_no}"
        if first_data_row:
            first_data_row = False
            if row[0].strip().lower() in _HEADER_FIRST_FIELDS:
                continue
        if len(row) > 2:
            raise DataError(
                f"{where}: expected 'image_id,class;class' (2 columns), got {len(row)} columns: {','.join(row)!r}; "
                f"separate classes with ';' or spaces, not commas"
            )
        field = row[1] if len(row) == 2 else ""
        _add(out, row[0], split_label_field(field, class_names), class_names, where)
    return out
