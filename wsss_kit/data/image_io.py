"""Reading images and masks with errors that name the file, and writing them atomically.

Images come back as ``uint8 (H, W, 3)`` RGB arrays, masks as ``int64 (H, W)`` index arrays
(0 = background, 1..C = classes, 255 = ignore). Every reader forces a full decode, so that a
truncated file fails here, with its name, instead of deep inside a training loop.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import ConfigError, DataError
from ..interfaces import IGNORE_INDEX
from .palette import voc_colormap

PathLike = str | os.PathLike[str]

INDEX_MASK_MODES = ("P", "L", "I", "I;16", "I;16B", "I;16L")
"""PIL modes accepted as index masks: the value of a pixel is its class."""

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
"""Largest image (width × height) read by default: 40 Mpx. A decoded image of that size takes
120 MB as ``uint8`` and 480 MB as the ``float32 (3, H, W)`` tensor a network gets, before any
feature maps; larger files are refused by name instead of failing with a MemoryError mid-run."""

MAX_IMAGE_PIXELS_ENV = "WSSS_KIT_MAX_IMAGE_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_IMAGE_PIXELS` (a pixel count, e.g. ``100000000``)."""


class MaskFormatError(DataError):
    """A mask file decodes but is not an index image (e.g. an RGB colour mask)."""


class ImageTooLargeError(DataError):
    """An image (or mask) file holds more pixels than :func:`max_image_pixels` allows."""


def max_image_pixels() -> int:
    """The pixel limit for reading one image: ``$WSSS_KIT_MAX_IMAGE_PIXELS`` or 40 Mpx.

    Raises:
        ConfigError: the environment variable is set but is not a positive whole number.
    """
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = float("nan")
    if not (1 <= value < float("inf") and value == int(value)):
        raise ConfigError(
            f"environment variable {MAX_IMAGE_PIXELS_ENV}={raw!r} must be a positive whole number of pixels "
            f"(e.g. 100000000 or 1e8); unset it for the default {DEFAULT_MAX_IMAGE_PIXELS:,}"
        )
    return int(value)


def _too_large_message(what: str, path: PathLike, width: int, height: int, limit: int) -> str:
    return (
        f"{what} {path} is {width}x{height} = {width * height / 1e6:.1f} Mpx, more than the limit of "
        f"{limit / 1e6:g} Mpx ({limit:,} pixels) that wsss_kit decodes; shrink or tile the image, or, "
        f"if the machine has the memory, raise the limit with the environment variable "
        f"{MAX_IMAGE_PIXELS_ENV}=<pixels> (e.g. {MAX_IMAGE_PIXELS_ENV}={max(2 * limit, width * height)})"
    )


_warned_truncated = False


def _warn_truncated_once() -> None:
    # Someone in this process asked PIL to pad truncated files with grey. That is their choice to
    # make, but it hides broken data from these readers and from check_dataset, so say it once.
    global _warned_truncated
    _warned_truncated = True
    warnings.warn(
        "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process: truncated image files will load "
        "silently (padded) instead of raising DataError; set it back to False to detect them",
        RuntimeWarning,
        stacklevel=3,
    )


def _open_decoded(path: PathLike, what: str) -> Image.Image:
    """Open ``path`` and decode all of its pixels, or raise DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
        _warn_truncated_once()
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is ours
            img = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{what} {path} is not a readable image (corrupt, or not an image format PIL knows)") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{what} {path} is refused by PIL as too large to decode: {exc} "
            f"(PIL.Image.MAX_IMAGE_PIXELS applies on top of {MAX_IMAGE_PIXELS_ENV})"
        ) from None
    except PermissionError:
        raise DataError(f"{what} {path} cannot be read: permission denied") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{what} {path} could not be decoded (corrupt or truncated file): {exc}") from None
    width, height = img.size
    if width * height > limit:  # read from the header, before any pixel memory is allocated
        img.close()
        raise ImageTooLargeError(_too_large_message(what, path, width, height, limit))
    try:
        img.load()
    except MemoryError:
        img.close()
        raise DataError(
            f"{what} {path} ({width}x{height}) could not be decoded: out of memory; free memory, shrink the image "
            f"or lower {MAX_IMAGE_PIXELS_ENV} to refuse such images up front"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        img.close()
        raise DataError(f"{what} {path} could not be decoded (corrupt or truncated file): {exc}") from None
    return img


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to ``uint8 (H, W, 3)`` RGB (see :func:`read_image`)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.float64)
        gray = np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite_max = float(np.nanmax(values)) if values.size else 0.0
        scale = 255.0 if finite_max <= 1.0 else 1.0
        gray = np.clip(np.round(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Drop alpha without compositing: transparent pixels keep their stored colour.
        img = img.convert("RGBA") if mode != "RGBA" else img
        return np.asarray(img, dtype=np.uint8)[:, :, :3].copy()
    if mode == "P" and "transparency" in img.info:
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)[:, :, :3].copy()
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image_with_mode(path: PathLike) -> tuple[np.ndarray, str]:
    """Like :func:`read_image`, also returning the file's original PIL mode (``"RGB"``, ``"L"``, ...)."""
    img = _open_decoded(path, "image")
    try:
        return to_rgb_uint8(img), img.mode
    except (OSError, ValueError) as exc:
        raise DataError(f"image {path} (mode {img.mode}) could not be converted to RGB: {exc}") from None
    except MemoryError:
        raise DataError(
            f"image {path} ({img.width}x{img.height}, mode {img.mode}) could not be converted to RGB: out of memory"
        ) from None


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)`` RGB.

    Conversions, by PIL mode of the file:

    * ``RGB``: as stored.
    * ``L`` (8-bit grey) and ``1`` (bilevel): the grey value is copied to the three channels.
    * ``P`` (palette): each index is replaced by its palette colour; a transparent palette entry
      keeps its colour (transparency is dropped).
    * ``RGBA``, ``LA``, ``PA``: the alpha channel is dropped, not composited over a background.
    * ``I;16`` / ``I`` (16-bit grey, as 16-bit PNGs decode): scaled to 8 bits by ``round(v * 255 / 65535)``.
      16-bit RGB PNGs are reduced to 8 bits per channel by PIL itself when it opens them.
    * ``F`` (32-bit float grey): read as [0, 1] when the maximum is at most 1, else as [0, 255];
      clipped to [0, 255].
    * ``CMYK`` (e.g. print JPEGs): PIL's CMYK→RGB conversion (``R = 255 - C - K`` per channel,
      clipped); Adobe's inverted CMYK JPEGs are un-inverted by PIL when it decodes them.
    * ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion to RGB.

    EXIF orientation is not applied: masks are aligned with the stored pixel grid.

    Raises:
        DataError: naming the file, when it is missing, not an image, corrupt or truncated.
    """
    return read_image_with_mode(path)[0]


def read_mask_raw(path: PathLike) -> np.ndarray:
    """Decode an index mask as ``int64 (H, W)`` without checking its size or values.

    Raises:
        DataError: the file is missing or unreadable.
        MaskFormatError: (a DataError) the file is not an index/palette image; RGB masks would need
            a colour-to-class lookup that is ambiguous, so they are refused.
    """
    img = _open_decoded(path, "mask")
    if img.mode not in INDEX_MASK_MODES:
        raise MaskFormatError(
            f"mask {path} is a {img.mode} image, but a palette ('P') or 8-bit index ('L') PNG is expected "
            f"whose pixel values are the class indices (0 = background, 1..C, 255 = ignore); "
            f"convert colour masks to index PNGs first"
        )
    return np.asarray(img).astype(np.int64)


def mask_size_problem(path: PathLike, mask: np.ndarray, expected_size: Sequence[int] | None) -> str | None:
    """The message for a mask whose size differs from ``expected_size`` ``(H, W)``, or ``None``."""
    if expected_size is None:
        return None
    h, w = int(expected_size[0]), int(expected_size[1])
    if mask.shape[:2] != (h, w):
        return f"mask {path} is {mask.shape[0]}x{mask.shape[1]} but the image is {h}x{w}"
    return None


def mask_value_problem(path: PathLike, mask: np.ndarray, num_classes: int) -> str | None:
    """The message for a mask with values outside ``0..num_classes`` and 255, or ``None``."""
    # Compare every pixel first and sort only the bad ones: np.unique over a whole 375x500 mask
    # was a third of the eval stage's scoring time (benchmarks speed miou_eval).
    outside = (mask < 0) | ((mask > num_classes) & (mask != IGNORE_INDEX))
    if not outside.any():
        return None
    bad = np.unique(mask[outside])
    shown = ", ".join(str(int(v)) for v in bad[:20]) + (", ..." if bad.size > 20 else "")
    return (
        f"mask {path} has values outside 0..{num_classes} and {IGNORE_INDEX}: [{shown}] "
        f"({num_classes} foreground classes; 255 = ignore)"
    )


def read_mask(path: PathLike, num_classes: int, expected_size: Sequence[int] | None = None) -> np.ndarray:
    """Read a palette or index PNG mask as ``int64 (H, W)`` with values in ``0..num_classes`` or 255.

    Args:
        path: a ``P`` (palette) or ``L`` (8-bit) PNG whose pixel values are class indices.
        num_classes: number of foreground classes ``C``.
        expected_size: ``(H, W)`` of the matching image, checked when given.

    Raises:
        DataError: naming the file when it is missing or unreadable, is an RGB image, has the
            wrong size ("mask X is HxW but the image is hxw") or holds values other than
            ``0..C`` and 255 (the bad values are listed).
    """
    mask = read_mask_raw(path)
    for problem in (mask_size_problem(path, mask, expected_size), mask_value_problem(path, mask, num_classes)):
        if problem:
            raise DataError(problem)
    return mask


def flat_palette(palette: Sequence[Sequence[int]] | None) -> list[int]:
    """768 palette bytes: ``palette`` for the first entries, the VOC colour map for the rest.

    Padding with the VOC map keeps 255 (ignore) drawn in VOC's cream even for a short palette.
    """
    try:  # hashable, so that a stage saving thousands of masks with one palette builds it once
        key = None if palette is None else tuple(tuple(colour) for colour in palette)
        hash(key)
    except TypeError:  # e.g. an entry that is not a sequence: the uncached path names it
        return _flat_palette(palette)
    return list(_flat_palette_cached(key))


@functools.lru_cache(maxsize=8)
def _flat_palette_cached(palette: tuple[tuple[Any, ...], ...] | None) -> tuple[int, ...]:
    return tuple(_flat_palette(palette))


def _flat_palette(palette: Sequence[Sequence[int]] | None) -> list[int]:
    full = voc_colormap(256)
    given = list(palette) if palette is not None else []
    if len(given) > 256:
        raise ValueError(f"a PNG palette holds at most 256 colours, got {len(given)}")
    out: list[int] = []
    for i in range(256):
        colour = given[i] if i < len(given) else full[i]
        if len(colour) != 3:
            raise ValueError(f"palette entry {i} must be an (R, G, B) triple, got {colour!r}")
        out.extend(int(c) for c in colour)
    return out


def save_mask_png(path: PathLike, mask: np.ndarray | torch.Tensor,
                  palette: Sequence[Sequence[int]] | None = None) -> Path:
    """Write an index mask ``(H, W)`` (values 0..255) as a palette PNG, atomically.

    Args:
        path: target file; its folder is created.
        mask: integer array or tensor ``(H, W)``.
        palette: RGB per value (entries beyond it take the VOC colour map); ``None`` = VOC map.

    Raises:
        ValueError: when ``mask`` is not 2-D integer data in 0..255.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"save_mask_png({path}): mask must be (H, W), got shape {mask.shape}")
    if mask.dtype.kind not in "iub":
        raise ValueError(f"save_mask_png({path}): mask must hold integers, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(
            f"save_mask_png({path}): mask values must be in 0..255, got {int(mask.min())}..{int(mask.max())}"
        )
    pixels = np.ascontiguousarray(mask.astype(np.uint8))
    img = Image.frombytes("P", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    img.putpalette(flat_palette(palette))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def save_image_png(path: PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write an RGB image as PNG, atomically.

    Args:
        image: ``uint8 (H, W, 3)`` (or ``(H, W)`` grey), or floating ``(3, H, W)`` in [0, 1]
            (values outside are clipped), as an array or tensor.

    Raises:
        ValueError: for any other dtype/shape combination.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"save_image_png({path}): a uint8 image must be (H, W, 3) or (H, W), got {image.shape}")
        pixels = image
    elif image.dtype.kind == "f":
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"save_image_png({path}): a float image must be (3, H, W) in [0, 1], got {image.shape}")
        pixels = np.round(np.clip(np.nan_to_num(image.transpose(1, 2, 0)), 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(
            f"save_image_png({path}): expected uint8 (H, W, 3) or float (3, H, W) in [0, 1], got dtype {image.dtype}"
        )
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")
    return Path(path)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8 (H, W, 3)`` → ``float32 (3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
