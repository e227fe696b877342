"""Pictures for inspecting a run: coloured masks, CAM heat-map overlays and labelled grids.

Images may be given as ``uint8 (H, W, 3)`` arrays or as float ``(3, H, W)`` tensors in [0, 1]
(the toolkit's image convention); see :func:`to_uint8_image`. Everything returns ``uint8
(H, W, 3)`` numpy arrays, except the grids, which are ``PIL.Image`` objects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path

__all__ = ["cam_grid", "cam_overlay", "class_legend_entries", "colorize_mask", "jet_colormap", "label_font",
           "legend_strip", "make_grid", "palette_array", "save_png", "stack_vertical", "text_panel", "to_uint8_image"]

IGNORE_INDEX = 255
WHITE = (255, 255, 255)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, Image.Image):
        return np.asarray(x.convert("RGB"))
    return np.asarray(x)


def to_uint8_image(image: Any) -> np.ndarray:
    """Any accepted image → ``uint8 (H, W, 3)`` RGB.

    Accepted: ``PIL.Image``; arrays or tensors ``(H, W, 3)``, ``(3, H, W)``, ``(1, 3, H, W)`` or
    grey ``(H, W)``. A tensor with 1 or 3 leading channels is read as channels-first, an array
    with 1 or 3 trailing channels as channels-last. Floating point values are taken to lie in
    [0, 1] (clipped); integers must lie in 0..255.
    """
    is_tensor = isinstance(image, torch.Tensor)
    arr = _to_numpy(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3:
        chw = arr.shape[0] in (1, 3)
        hwc = arr.shape[-1] in (1, 3)
        if chw and (is_tensor or not hwc):
            arr = arr.transpose(1, 2, 0)
        elif not hwc:
            raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {arr.shape}")
    else:
        raise ValueError(f"image must be (H, W, 3), (3, H, W) or (H, W), got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        return np.ascontiguousarray((np.nan_to_num(arr.astype(np.float32)).clip(0, 1) * 255).round().astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"integer image values must lie in 0..255, got {arr.min()}..{arr.max()}")
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise ValueError(f"unsupported image dtype {arr.dtype}")


def palette_array(palette: Any) -> np.ndarray:
    """A palette → ``uint8 (N, 3)``: a sequence of RGB triples, an ``(N, 3)`` array, or a flat
    sequence of ``3·N`` values (PIL's ``getpalette()`` layout)."""
    arr = np.asarray(palette)
    if arr.ndim == 1 and arr.size % 3 == 0:
        arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"palette must be RGB triples (N, 3) or a flat list of 3N values, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or arr.min() < 0 or arr.max() > 255:
        raise ValueError("palette colours must be numbers in 0..255")
    return arr.astype(np.uint8)


def colorize_mask(mask: Any, palette: Any) -> np.ndarray:
    """Colour a label mask: ``(H, W)`` ints → ``uint8 (H, W, 3)``.

    Args:
        mask: class indices ``(H, W)`` (0 = background, 255 = ignore), array or tensor.
        palette: colour per value (see :func:`palette_array`); 255 takes the palette's colour 255
            when it has one, else white.

    Raises:
        ValueError: a mask value (other than 255) has no palette colour, or the mask is not 2-D
            integers.
    """
    m = _to_numpy(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.integer) or m.dtype == np.bool_):
        raise ValueError(f"mask must hold integer class indices, got dtype {m.dtype}")
    m = m.astype(np.int64)
    pal = palette_array(palette)
    lut = np.zeros((256, 3), np.uint8)
    n = min(len(pal), 256)
    lut[:n] = pal[:n]
    if len(pal) <= IGNORE_INDEX:
        lut[IGNORE_INDEX] = WHITE
    bad = (m < 0) | (m > 255) | ((m >= len(pal)) & (m != IGNORE_INDEX))
    if bad.any():
        vals = np.unique(m[bad])[:8].tolist()
        raise ValueError(f"mask values {vals} have no colour in a palette of {len(pal)} entries")
    return lut[m]


def jet_colormap(values: Any) -> np.ndarray:
    """Blue → cyan → yellow → red colours ``uint8 (..., 3)`` for values in [0, 1] (clipped).

    Each channel is a trapezoid over the value axis, peaking at 1/4 (blue), 1/2 (green) and
    3/4 (red), like the classic "jet" map.
    """
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=-1) * 255).round().astype(np.uint8)


def cam_overlay(image: Any, cam: Any, alpha: float = 0.5) -> np.ndarray:
    """Blend a heat map of ``cam`` ``(H, W)`` in [0, 1] over ``image``: ``uint8 (H, W, 3)``.

    ``alpha`` is the heat map's weight (0 = the image only, 1 = the heat map only).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = to_uint8_image(image)
    c = _to_numpy(cam)
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]
    if c.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {c.shape}")
    if c.shape != rgb.shape[:2]:
        raise ValueError(f"cam is {c.shape[0]}x{c.shape[1]} but the image is {rgb.shape[0]}x{rgb.shape[1]}")
    heat = jet_colormap(c).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat
    return out.round().clip(0, 255).astype(np.uint8)


LABEL_FONT_SIZE = 14
"""Pixel size of the labels in the pictures (grids, legends, charts)."""


def label_font(size: int = LABEL_FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font at ``size`` pixels: the one Pillow ships (Aileron Regular, built into every
    Pillow >= 10.1 wheel with FreeType), so labels are readable without any system font. Falls back
    to Pillow's fixed-size bitmap font only on a Pillow built without FreeType."""
    if size < 1:
        raise ValueError(f"font size must be >= 1 pixel, got {size}")
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError):  # Pillow < 10.1, or no FreeType: one bitmap size
        return ImageFont.load_default()


def _font() -> Any:
    return label_font()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - min(left, 0)), int(bottom - min(top, 0))


def make_grid(
    rows: Sequence[Sequence[Any]],
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    pad: int = 2,
    background: tuple[int, int, int] = WHITE,
    text_color: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """Lay images out in a labelled grid.

    Args:
        rows: rows of images (any format :func:`to_uint8_image` accepts; ``None`` leaves a cell
            empty). Rows may differ in length; a column is as wide as its widest image (or its
            title, images centred) and a row as tall as its tallest.
        row_titles: one label per row, drawn on the left.
        col_titles: one label per column, drawn on top.
        pad: pixels between cells and around the grid.
        background: RGB of the gaps.
        text_color: RGB of the labels (:func:`label_font`).

    Returns:
        an RGB ``PIL.Image``.
    """
    if not rows:
        raise ValueError("make_grid needs at least one row")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    cells = [[None if im is None else to_uint8_image(im) for im in row] for row in rows]
    n_cols = max(len(r) for r in cells)
    if n_cols == 0:
        raise ValueError("make_grid got only empty rows")
    if row_titles is not None and len(row_titles) != len(cells):
        raise ValueError(f"{len(row_titles)} row titles for {len(cells)} rows")
    if col_titles is not None and len(col_titles) > n_cols:
        raise ValueError(f"{len(col_titles)} column titles for {n_cols} columns")

    col_w = [max([im.shape[1] for c in cells if j < len(c) and (im := c[j]) is not None] or [1])
             for j in range(n_cols)]
    row_h = [max([im.shape[0] for im in r if im is not None] or [1]) for r in cells]

    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 0
    if row_titles:
        left = max(_text_size(probe, str(t), font)[0] for t in row_titles) + pad
    top = 0
    if col_titles:
        top = max(_text_size(probe, str(t), font)[1] for t in col_titles) + pad
        # a column is at least as wide as its title (small images keep readable, separate titles)
        col_w = [max(w, _text_size(probe, str(col_titles[j]), font)[0] + 2 * pad) if j < len(col_titles) else w
                 for j, w in enumerate(col_w)]

    width = left + sum(col_w) + pad * (n_cols + 1)
    height = top + sum(row_h) + pad * (len(cells) + 1)
    canvas = Image.new("RGB", (width, height), tuple(background))
    draw = ImageDraw.Draw(canvas)

    xs = [left + pad + sum(col_w[:j]) + pad * j for j in range(n_cols)]
    y = top + pad
    for i, row in enumerate(cells):
        for j, im in enumerate(row):
            if im is not None:
                canvas.paste(Image.fromarray(im), (xs[j] + (col_w[j] - im.shape[1]) // 2, y))
        if row_titles:
            th = _text_size(draw, str(row_titles[i]), font)[1]
            draw.text((pad, y + max(0, (row_h[i] - th) // 2)), str(row_titles[i]), fill=tuple(text_color), font=font)
        y += row_h[i] + pad
    if col_titles:
        for j, title in enumerate(col_titles):
            tw = _text_size(draw, str(title), font)[0]
            draw.text((xs[j] + max(0, (col_w[j] - tw) // 2), pad // 2), str(title), fill=tuple(text_color), font=font)
    return canvas


def text_panel(size: tuple[int, int], text: str, background: tuple[int, int, int] = (228, 228, 228),
               text_color: tuple[int, int, int] = (80, 80, 80)) -> np.ndarray:
    """A hatched grey ``uint8 (H, W, 3)`` panel of ``size = (H, W)`` with ``text`` centred (wrapped at
    spaces to the width): the cell of a picture that does not exist, e.g. "no ground truth", so an
    absent picture is not mistaken for an all-white (all ignore) mask."""
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"panel size must be (H, W) with H, W >= 1, got {size}")
    canvas = Image.new("RGB", (w, h), tuple(background))
    draw = ImageDraw.Draw(canvas)
    hatch = tuple(max(0, c - 18) for c in background)
    for x in range(-h, w, 12):  # diagonal hatching: visibly "nothing here", unlike a mask colour
        draw.line([(x, h), (x + h, 0)], fill=hatch, width=1)
    font = label_font(max(10, min(LABEL_FONT_SIZE, w // 6)))
    lines: list[str] = []
    for word in text.split():
        # two spaces between words: a TrueType space at 10 px is too thin to read as a gap
        if lines and _text_size(draw, f"{lines[-1]}  {word}", font)[0] <= w - 4:
            lines[-1] += f"  {word}"
        else:
            lines.append(word)
    heights = [_text_size(draw, line, font)[1] + 2 for line in lines]
    y = max(0, (h - sum(heights)) // 2)
    for line, lh in zip(lines, heights):
        tw = _text_size(draw, line, font)[0]
        draw.text((max(0, (w - tw) // 2), y), line, fill=tuple(text_color), font=font)
        y += lh
    return np.asarray(canvas)


def legend_strip(entries: Sequence[tuple[str, Any]], width: int, cam_scale: bool = False, pad: int = 6) -> Image.Image:
    """A white strip of colour swatches and their names (``entries``: ``(name, RGB)``), wrapped into
    rows that fit ``width`` pixels; with ``cam_scale`` a labelled heat-map bar (CAM 0 → 1) first."""
    font = label_font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = max(_text_size(probe, "Ag", font)[1], 12) + 4
    items: list[tuple[int, str, Any]] = []  # (width, name, colour or None for the CAM bar)
    if cam_scale:
        items.append((_text_size(probe, "CAM 0", font)[0] + 70 + _text_size(probe, "1", font)[0] + 3 * pad,
                      "CAM", None))
    for name, colour in entries:
        items.append((line_h + 4 + _text_size(probe, str(name), font)[0] + 2 * pad, str(name), colour))
    rows: list[list[tuple[int, str, Any]]] = [[]]
    used = pad
    for item in items:
        if rows[-1] and used + item[0] > width:
            rows.append([])
            used = pad
        rows[-1].append(item)
        used += item[0]
    canvas = Image.new("RGB", (max(1, width), pad + len(rows) * (line_h + pad)), WHITE)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        x, y = pad, pad + r * (line_h + pad)
        for item_w, name, colour in row:
            if colour is None:  # the CAM colour bar: the jet map from 0 to 1
                draw.text((x, y), "CAM 0", fill=(0, 0, 0), font=font)
                bx = x + _text_size(draw, "CAM 0", font)[0] + pad
                bar = jet_colormap(np.linspace(0.0, 1.0, 70)[None, :].repeat(line_h - 4, 0))
                canvas.paste(Image.fromarray(bar), (bx, y + 2))
                draw.text((bx + 70 + pad // 2, y), "1", fill=(0, 0, 0), font=font)
            else:
                rgb = tuple(int(c) for c in palette_array([colour])[0])
                draw.rectangle([x, y + 1, x + line_h - 2, y + line_h - 3], fill=rgb, outline=(60, 60, 60))
                draw.text((x + line_h + 4, y), name, fill=(0, 0, 0), font=font)
            x += item_w
    return canvas


def class_legend_entries(class_names: Sequence[str], palette: Any) -> list[tuple[str, tuple[int, int, int]]]:
    """``(name, RGB)`` for background and each class (``class_names``: ``C`` foreground names, or
    ``C + 1`` with background first) and for the ignore value 255, coloured as :func:`colorize_mask`
    colours them."""
    names = [str(n) for n in class_names]
    if names[:1] != ["background"]:
        names = ["background"] + names
    pal = palette_array(palette)
    if len(pal) < len(names):
        raise ValueError(f"a palette of {len(pal)} colours for {len(names)} classes (background included)")
    def rgb(i: int) -> tuple[int, int, int]:
        return int(pal[i][0]), int(pal[i][1]), int(pal[i][2])

    ignore = rgb(IGNORE_INDEX) if len(pal) > IGNORE_INDEX else WHITE
    return [(name, rgb(i)) for i, name in enumerate(names)] + [("ignore / none", ignore)]


def stack_vertical(images: Sequence[Image.Image], background: tuple[int, int, int] = WHITE) -> Image.Image:
    """``images`` one under the other, left-aligned, on a canvas as wide as the widest."""
    if not images:
        raise ValueError("stack_vertical needs at least one image")
    canvas = Image.new("RGB", (max(im.width for im in images), sum(im.height for im in images)), background)
    y = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (0, y))
        y += im.height
    return canvas


def cam_grid(
    image: Any,
    cams: Any,
    labels: Any,
    class_names: Sequence[str],
    alpha: float = 0.5,
) -> Image.Image:
    """The image followed by a CAM overlay for each class present in ``labels``, titled.

    Args:
        image: the image (see :func:`to_uint8_image`).
        cams: ``(C, H, W)`` in [0, 1].
        labels: ``(C,)`` multi-hot.
        class_names: the ``C`` foreground names, or ``C + 1`` names with background first.
    """
    c = _to_numpy(cams)
    lab = _to_numpy(labels).reshape(-1)
    if c.ndim != 3:
        raise ValueError(f"cams must be (C, H, W), got shape {c.shape}")
    if lab.shape[0] != c.shape[0]:
        raise ValueError(f"labels have {lab.shape[0]} entries but there are {c.shape[0]} CAMs")
    names = list(class_names)
    if len(names) == c.shape[0] + 1:
        names = names[1:]
    if len(names) != c.shape[0]:
        raise ValueError(f"{len(class_names)} class names for {c.shape[0]} CAMs (give C, or C + 1 with background)")
    present = [k for k in range(c.shape[0]) if lab[k] > 0]
    row = [to_uint8_image(image)] + [cam_overlay(image, c[k], alpha) for k in present]
    return make_grid([row], col_titles=["image"] + [names[k] for k in present])


def save_png(path: str | os.PathLike[str], image: Any) -> Path:
    """Write ``image`` (a ``PIL.Image`` or anything :func:`to_uint8_image` accepts) as PNG,
    atomically; returns the path."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8_image(image))
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)
