"""COCO instance annotations → semantic masks, bit-equal to pycocotools' ``COCO.annToMask``.

The forms of ``segmentation``:

* a polygon list, flat ``[x1, y1, x2, y2, ...]`` outlines in pixel coordinates, rasterised by
  pycocotools (``frPyObjects`` per outline, ``merge``, ``decode``): the masks the COCO tools and
  the WSSS papers' converted COCO ground truth come from (PIL's polygon fill, used before, differed
  in 4.6-7 % of object pixels because it includes the outline);
* an RLE ``{"size": [h, w], "counts": [...]}`` (crowd regions): alternating run lengths of 0s and
  1s (starting with 0s) over the pixels in column-major order (down the first column first);
* a compressed RLE, ``counts`` a string: each run length (from the third on, as the difference
  to the run two before) written as a signed number in groups of 5 bits, least significant first,
  each group stored as ``chr(48 + bits)`` with bit 0x20 set when more groups follow; bit 0x10 of
  the last group is the sign.

RLEs are checked here first (run lengths adding up to ``h * w``, valid characters) so a bad one is
a :class:`DataError` naming what is wrong, then decoded by pycocotools.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..interfaces import IGNORE_INDEX


def _mask_api() -> Any:
    """``pycocotools.mask``, imported on first use (a core dependency; the message says how to get it)."""
    try:
        import pycocotools.mask as mask_api
    except ImportError as exc:  # pragma: no cover - pycocotools is a declared dependency
        raise DataError(f"COCO masks need pycocotools ({exc}); install it: pip install pycocotools") from None
    return mask_api


def _decode(rle: Any) -> np.ndarray:
    """``pycocotools.mask.decode`` of one RLE as ``bool (h, w)``; its numpy-2 ``copy=`` deprecation
    warning (raised inside pycocotools, about its own array wrapper) is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*__array__ implementation")
        return _mask_api().decode(rle).astype(bool)


def decode_rle_counts(counts: str) -> list[int]:
    """Decode a compressed COCO RLE string into its run lengths.

    Raises:
        DataError: a character outside the encoding's range, a string that ends inside a number,
            or a negative run length.
    """
    runs: list[int] = []
    pos, n = 0, len(counts)
    while pos < n:
        value, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise DataError(f"compressed RLE string ends inside a number (at character {pos})")
            code = ord(counts[pos]) - 48
            if not 0 <= code < 64:
                raise DataError(f"compressed RLE string has an invalid character {counts[pos]!r} at {pos}")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift  # sign-extend the last 5-bit group
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise DataError(f"compressed RLE string decodes to a negative run length {value} (run {len(runs)})")
        runs.append(value)
    return runs


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode an RLE (``counts`` a list or a compressed string) into a ``bool (h, w)`` mask.

    Equal to pycocotools' decoding (``decode(frPyObjects(rle, h, w))`` for a list,
    ``decode(rle)`` for a string), which does the work once the RLE is checked.

    Raises:
        DataError: the runs do not add up to ``h * w`` or the RLE is malformed.
    """
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        got = sorted(rle) if isinstance(rle, dict) else rle
        raise DataError(f"RLE must be {{'size': [h, w], 'counts': ...}}, got keys {got!r}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    try:
        runs = decode_rle_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    except (TypeError, ValueError):
        raise DataError(
            f"RLE counts must be a list of run lengths or a compressed string, got {counts!r:.80}") from None
    if any(r < 0 for r in runs):
        raise DataError("RLE has a negative run length")
    if sum(runs) != h * w:
        raise DataError(f"RLE run lengths add up to {sum(runs)} pixels but its size {h}x{w} has {h * w}")
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    if isinstance(counts, str):
        return _decode({"size": [h, w], "counts": counts.encode("ascii")})
    return _decode(_mask_api().frPyObjects({"size": [h, w], "counts": runs}, h, w))


def _outline(poly: Any) -> list[float] | None:
    """One outline as floats, or None when it has fewer than 3 points or a non-finite value."""
    try:
        coords = [float(c) for c in poly]
    except (TypeError, ValueError):
        raise DataError(f"a polygon must be a flat list of numbers [x1, y1, x2, y2, ...], got {poly!r:.80}") from None
    if len(coords) < 6 or not all(math.isfinite(c) for c in coords):
        return None
    return coords


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygon outlines into a ``bool (height, width)`` mask (their union).

    Bit-equal to pycocotools (``decode(merge(frPyObjects(polygons, height, width)))``, what
    ``COCO.annToMask`` does). Outlines with fewer than 3 points cover no pixel there and are
    skipped here, which also spares pycocotools' misreading of a 4-number first outline as a box
    (it raises); an odd trailing number is dropped as pycocotools drops it.

    Raises:
        DataError: an outline that is not a list of numbers.
    """
    if isinstance(polygons, (str, bytes)) or not isinstance(polygons, Sequence):
        raise DataError(f"polygons must be a list of outlines, got {type(polygons).__name__}")
    outlines = [c for c in (_outline(p) for p in polygons) if c is not None]
    if not outlines or height * width == 0:
        return np.zeros((height, width), dtype=bool)
    mask_api = _mask_api()
    rles = mask_api.frPyObjects(outlines, height, width)
    return _decode(mask_api.merge(rles))


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons, RLE or compressed RLE) → ``bool (height, width)``.

    Raises:
        DataError: an unknown form, or an RLE whose size differs from the image's.
    """
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation)
        if mask.shape != (height, width):
            raise DataError(f"RLE is {mask.shape[0]}x{mask.shape[1]} but the image is {height}x{width}")
        return mask
    raise DataError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def semantic_mask(annotations: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Paint an image's instances into one ``uint8 (height, width)`` mask.

    Each annotation is ``{"class": 1..C, "iscrowd": 0/1, "segmentation": ..., "area": float}``.
    Crowd regions are painted 255 (ignore) first; then the other instances from the largest to
    the smallest, so a small object in front of a large one stays visible and a labelled
    instance wins over an overlapping crowd region.

    Raises:
        DataError: from :func:`segmentation_to_mask`, prefixed with the annotation id.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    crowd = [a for a in annotations if a.get("iscrowd")]
    single = sorted((a for a in annotations if not a.get("iscrowd")), key=lambda a: -float(a.get("area", 0.0)))
    for ann in crowd + single:
        try:
            region = segmentation_to_mask(ann["segmentation"], height, width)
        except DataError as exc:
            raise DataError(f"annotation {ann.get('id', '?')}: {exc}") from None
        mask[region] = IGNORE_INDEX if ann.get("iscrowd") else int(ann["class"])
    return mask
