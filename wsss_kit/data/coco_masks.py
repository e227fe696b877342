"""COCO instance annotations → semantic masks: polygons, run-length encodings, compressed RLE strings.

Implemented here (no pycocotools) from the format's description:

* a polygon is a list of flat ``[x1, y1, x2, y2, ...]`` outlines in pixel coordinates;
* an RLE is ``{"size": [h, w], "counts": [...]}``: alternating run lengths of 0s and 1s
  (starting with 0s) over the pixels in column-major order (down the first column first);
* a compressed RLE has ``counts`` as a string: each run length (from the third on, as the
  difference to the run two before) is written as a signed number in groups of 5 bits, least
  significant first, each group stored as the character ``chr(48 + bits)`` with bit 0x20 set
  when more groups follow; bit 0x10 of the last group is the sign.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError
from ..interfaces import IGNORE_INDEX


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

    Raises:
        DataError: the runs do not add up to ``h * w`` or the RLE is malformed.
    """
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"RLE must be {{'size': [h, w], 'counts': ...}}, got keys {sorted(rle) if isinstance(rle, dict) else rle!r}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = decode_rle_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs):
        raise DataError("RLE has a negative run length")
    if sum(runs) != h * w:
        raise DataError(f"RLE run lengths add up to {sum(runs)} pixels but its size {h}x{w} has {h * w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T  # column-major order


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygon outlines into a ``bool (height, width)`` mask (their union).

    Outlines with fewer than 3 points are skipped (COCO has a few degenerate ones).
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        coords = [float(c) for c in poly]
        if len(coords) < 6:
            continue
        draw.polygon(list(zip(coords[0::2], coords[1::2])), fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


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
