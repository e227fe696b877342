"""The results picture: paper vs measured per row, and per class where the paper gives per-class IoUs.

Drawn with Pillow (matplotlib is not a dependency of wsss-kit): horizontal bar pairs, one panel for
the rows and one per row with per-class numbers, each with its value axis, labels and a legend.
"""

from __future__ import annotations

import os
from typing import Sequence

from PIL import Image, ImageDraw

from wsss_kit.viz import label_font, save_png

__all__ = ["Bars", "plot_results"]

PAPER_COLOUR = (150, 150, 150)
MEASURED_COLOUR = (31, 119, 180)
_BAR, _GAP, _LABEL_W, _PLOT_W, _MARGIN = 9, 8, 260, 520, 16


class Bars:
    """One panel: ``labels[i]`` with ``paper[i]`` and ``measured[i]`` (``None``: not measured)."""

    def __init__(self, title: str, axis: str, labels: Sequence[str], paper: Sequence[float | None],
                 measured: Sequence[float | None]) -> None:
        if not len(labels) == len(paper) == len(measured):
            raise ValueError(f"panel {title!r}: {len(labels)} labels, {len(paper)} paper values, "
                             f"{len(measured)} measured values; expected one of each per label")
        self.title, self.axis = title, axis
        self.labels, self.paper, self.measured = list(labels), list(paper), list(measured)

    def height(self) -> int:
        return 60 + len(self.labels) * (2 * _BAR + _GAP) + 40


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def _panel(draw: ImageDraw.ImageDraw, top: int, panel: Bars, font, small) -> None:
    values = [v for v in panel.paper + panel.measured if v is not None]
    scale_max = max([100.0] + values) if all(0 <= v <= 100 for v in values) else max(values + [1.0]) * 1.1
    x0, x1 = _MARGIN + _LABEL_W, _MARGIN + _LABEL_W + _PLOT_W
    draw.text((_MARGIN, top + 4), panel.title, fill="black", font=font)
    y = top + 30
    for label, paper, measured in zip(panel.labels, panel.paper, panel.measured):
        draw.text((_MARGIN, y + _BAR // 2), _fit(draw, label, small, _LABEL_W - 8), fill="black", font=small)
        for value, colour, dy in ((paper, PAPER_COLOUR, 0), (measured, MEASURED_COLOUR, _BAR)):
            if value is None:
                draw.text((x0 + 4, y + dy - 2), "-", fill=colour, font=small)
                continue
            w = max(1, round(_PLOT_W * max(value, 0.0) / scale_max))
            draw.rectangle([x0, y + dy, x0 + w, y + dy + _BAR - 2], fill=colour)
            draw.text((x0 + w + 4, y + dy - 2), f"{value:.1f}", fill=colour, font=small)
        y += 2 * _BAR + _GAP
    draw.line([x0, top + 26, x0, y], fill="black")
    draw.line([x0, y, x1, y], fill="black")
    for k in range(6):
        x = x0 + round(_PLOT_W * k / 5)
        draw.line([x, y, x, y + 4], fill="black")
        draw.text((x - 8, y + 6), f"{scale_max * k / 5:.0f}", fill="black", font=small)
    draw.text((x0 + _PLOT_W // 2 - 30, y + 20), panel.axis, fill="black", font=small)


def plot_results(path: str | os.PathLike[str], title: str, panels: Sequence[Bars], note: str = "") -> None:
    """Write the panels, stacked, as one PNG (atomically) with a title, an optional note line and
    a legend (paper grey, measured blue)."""
    if not panels:
        raise ValueError("plot_results: no panels to draw")
    font, small = label_font(15), label_font(12)
    width = 2 * _MARGIN + _LABEL_W + _PLOT_W + 60
    head = 70 if note else 50
    image = Image.new("RGB", (width, head + sum(p.height() for p in panels)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN, 10), _fit(draw, title, font, width - 2 * _MARGIN), fill="black", font=font)
    legend_x = _MARGIN
    for name, colour in (("paper", PAPER_COLOUR), ("measured", MEASURED_COLOUR)):
        draw.rectangle([legend_x, 32, legend_x + 14, 44], fill=colour)
        draw.text((legend_x + 20, 31), name, fill="black", font=small)
        legend_x += 110
    if note:
        draw.text((_MARGIN, 50), _fit(draw, note, small, width - 2 * _MARGIN), fill=(180, 0, 0), font=small)
    top = head
    for panel in panels:
        _panel(draw, top, panel, font, small)
        top += panel.height()
    save_png(path, image)
