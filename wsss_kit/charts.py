"""Charts of a run, drawn with Pillow (matplotlib is not a dependency): loss curves from a training
stage's ``log.csv`` and per-class IoU bars from a stage's scores.

Both return ``PIL.Image`` objects (RGB, white background, labelled axes, a legend, the labels in
:func:`wsss_kit.viz.label_font`); :func:`write_loss_curves` writes a stage's ``loss_curves.png``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw

from .viz import label_font, save_png

__all__ = ["LOG_COLUMNS", "LOSS_CURVES_NAME", "class_iou_chart", "loss_curve_chart", "loss_terms", "write_loss_curves",
           "y_scale"]

LOSS_CURVES_NAME = "loss_curves.png"
"""The loss-curve picture a training stage writes beside its ``log.csv``."""

LOG_COLUMNS = frozenset({"step", "lr", "seconds", "images_per_s", "samples_per_s", "eta_s"})
"""Columns of ``log.csv`` that are not loss terms (the step, learning rate, clock and throughput)."""

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
"""One colour per series (the "tab10" cycle)."""

LOG_SCALE_RATIO = 30.0
"""Loss curves use a log y axis when the positive values span more than this factor."""

_BLACK, _GREY, _GRID = (0, 0, 0), (90, 90, 90), (225, 225, 225)


def loss_terms(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The loss columns of ``log.csv`` rows: ``loss`` first, then the other terms in column order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in LOG_COLUMNS:
                seen.setdefault(key, None)
    return sorted(seen, key=lambda k: (k != "loss", list(seen).index(k)))


def y_scale(values: Sequence[float]) -> str:
    """``"log"`` when every value is positive and they span more than :data:`LOG_SCALE_RATIO`, else ``"linear"``."""
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if not finite or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) > LOG_SCALE_RATIO else "linear"


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = _nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.2g}"


class _Axes:
    """A plot area ``(x0, y0, x1, y1)`` in pixels mapping data ``[xlo, xhi] x [ylo, yhi]`` (log10 in y
    when ``log``)."""

    def __init__(self, box: tuple[int, int, int, int], xr: tuple[float, float], yr: tuple[float, float],
                 log: bool) -> None:
        self.box, self.log = box, log
        self.xlo, self.xhi = xr if xr[1] > xr[0] else (xr[0] - 0.5, xr[0] + 0.5)
        ylo, yhi = (math.log10(yr[0]), math.log10(yr[1])) if log else yr
        if yhi <= ylo:
            ylo, yhi = ylo - 0.5, yhi + 0.5
        self.ylo, self.yhi = ylo, yhi

    def x(self, v: float) -> float:
        x0, _, x1, _ = self.box
        return x0 + (v - self.xlo) / (self.xhi - self.xlo) * (x1 - x0)

    def y(self, v: float) -> float:
        _, y0, _, y1 = self.box
        t = math.log10(v) if self.log else v
        return y1 - (t - self.ylo) / (self.yhi - self.ylo) * (y1 - y0)


def _vertical_text(image: Image.Image, text: str, centre: tuple[int, int], font: Any) -> None:
    probe = ImageDraw.Draw(image)
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    label = Image.new("RGB", (int(right - left) + 2, int(bottom - top) + 2), "white")
    ImageDraw.Draw(label).text((-left + 1, -top + 1), text, fill=_BLACK, font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (centre[0] - label.width // 2, centre[1] - label.height // 2))


def _smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard-style exponential moving average, de-biased at the start."""
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def loss_curve_chart(rows: Sequence[Mapping[str, float]], title: str = "training loss",
                     size: tuple[int, int] = (820, 460), xlabel: str = "optimizer step",
                     ylabel: str = "loss") -> Image.Image:
    """Each loss term of ``rows`` (``log.csv`` rows: ``step`` and one value per term) against the step.
    ``xlabel``/``ylabel`` name the axes (other series against another x, e.g. seconds against the
    input size, read ``step`` as that x).

    The y axis is logarithmic when every value is positive and they span more than
    :data:`LOG_SCALE_RATIO`; with more than 40 steps the raw values are drawn pale and an
    exponential moving average over them in full colour. Non-finite values are left out.

    Raises:
        ValueError: no rows, or no finite loss value in them.
    """
    terms = loss_terms(rows)
    series = {t: [(float(r["step"]), float(r[t])) for r in rows if t in r and math.isfinite(float(r[t]))]
              for t in terms}
    series = {t: pts for t, pts in series.items() if pts}
    if not series:
        raise ValueError(f"loss_curve_chart: no finite loss values in {len(rows)} log row(s)")
    values = [v for pts in series.values() for _, v in pts]
    steps = [s for pts in series.values() for s, _ in pts]
    log = y_scale(values) == "log"
    width, height = size
    font, small = label_font(16), label_font(13)
    smooth = max(len(p) for p in series.values()) > 40
    note = "pale: per step\nbold: smoothed (EMA 0.9)" if smooth else ""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_w = 16 + max([32 + int(probe.textlength(f"{t} {_fmt(pts[-1][1])}", font=small)) for t, pts in series.items()]
                        + [int(probe.textlength(line, font=small)) for line in note.splitlines()])
    image = Image.new("RGB", (width + legend_w, height), "white")
    draw = ImageDraw.Draw(image)
    box = (78, 44, width - 16, height - 56)
    if log:
        yr = (10 ** math.floor(math.log10(min(values))), 10 ** math.ceil(math.log10(max(values))))
    else:
        pad = (max(values) - min(values)) * 0.05 or abs(max(values)) * 0.05 or 1.0
        yr = (min(values) - pad, max(values) + pad)
    axes = _Axes(box, (min(steps), max(steps)), yr, log)
    # grid and tick labels
    if log:
        decades = range(round(math.log10(yr[0])), round(math.log10(yr[1])) + 1)
        yticks = [m * 10.0 ** d for d in decades for m in ((1, 2, 5) if len(decades) <= 3 else (1,)) if
                  yr[0] <= m * 10.0 ** d <= yr[1]]
    else:
        yticks = [t for t in _linear_ticks(*yr) if yr[0] <= t <= yr[1]]
    for t in yticks:
        y = axes.y(t)
        draw.line([box[0], y, box[2], y], fill=_GRID)
        label = _fmt(t)
        draw.text((box[0] - 6 - draw.textlength(label, font=small), y - 8), label, fill=_GREY, font=small)
    for t in _linear_ticks(axes.xlo, axes.xhi, 6):
        if axes.xlo <= t <= axes.xhi:
            x = axes.x(t)
            draw.line([x, box[1], x, box[3]], fill=_GRID)
            label = f"{t:g}"
            draw.text((x - draw.textlength(label, font=small) / 2, box[3] + 6), label, fill=_GREY, font=small)
    draw.rectangle(box, outline=_BLACK)
    # the curves
    for i, (term, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        ys = [v for _, v in pts]
        lines = [(ys, tuple(255 - (255 - c) * 2 // 5 for c in colour), 1)] if smooth else []
        lines.append((_smooth(ys, 0.9) if smooth else ys, colour, 2))
        for vals, col, w in lines:
            xy = [(axes.x(s), axes.y(v)) for (s, _), v in zip(pts, vals)]
            if len(xy) == 1:
                draw.ellipse([xy[0][0] - 3, xy[0][1] - 3, xy[0][0] + 3, xy[0][1] + 3], fill=col)
            else:
                draw.line(xy, fill=col, width=w)
        ly = box[1] + 4 + 22 * i
        draw.line([width + 4, ly + 8, width + 26, ly + 8], fill=colour, width=3)
        draw.text((width + 32, ly), f"{term} {_fmt(pts[-1][1])}", fill=_BLACK, font=small)
    draw.text((box[0], 12), title, fill=_BLACK, font=font)
    draw.text(((box[0] + box[2]) / 2 - draw.textlength(xlabel, font=font) / 2, box[3] + 28), xlabel,
              fill=_BLACK, font=font)
    _vertical_text(image, f"{ylabel} (log scale)" if log else ylabel, (20, (box[1] + box[3]) // 2), font)
    if note:
        draw.text((width + 4, box[1] + 8 + 22 * len(series)), note, fill=_GREY, font=small)
    return image


def write_loss_curves(log_csv: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                      title: str | None = None) -> Path | None:
    """Draw the loss curves of a ``log.csv`` into ``out`` (default: ``loss_curves.png`` beside it),
    atomically; ``None`` (nothing written) when the log has no finite loss value yet."""
    from .engine.csv_log import read_log

    log_csv = Path(log_csv)
    rows = read_log(log_csv)
    if not any(math.isfinite(v) for r in rows for k, v in r.items() if k not in LOG_COLUMNS):
        return None
    path = Path(out) if out is not None else log_csv.with_name(LOSS_CURVES_NAME)
    save_png(path, loss_curve_chart(rows, title or f"{log_csv.parent.name}: training loss ({len(rows)} steps)"))
    return path


def class_iou_chart(series: Mapping[str, Sequence[float | None]], class_names: Sequence[str],
                    title: str = "per-class IoU") -> Image.Image:
    """Grouped bars: for each class, one bar per series (e.g. ``{"train": [...], "held-out": [...]}``)
    of IoUs in [0, 1] (``None``: not scored, drawn as "n/a"), on a 0–100 % axis with the value on
    each bar; class names are drawn upright, or turned when they do not fit their group.

    Raises:
        ValueError: no series, or a series whose length is not ``len(class_names)``.
    """
    if not series:
        raise ValueError("class_iou_chart: no series to draw")
    names = [str(n) for n in class_names]
    for key, values in series.items():
        if len(values) != len(names):
            raise ValueError(f"class_iou_chart: series {key!r} has {len(values)} values for {len(names)} classes "
                             f"({', '.join(names[:6])}{' ...' if len(names) > 6 else ''})")
    font, small = label_font(16), label_font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # many classes (COCO's 81): narrower bars without value labels keep the chart a readable width
    bar_w = (18 if len(series) <= 2 else 12) if len(names) <= 30 else 8
    group_w = bar_w * len(series) + (14 if len(names) <= 30 else 6)
    labelled = len(names) <= 30
    turned = max(probe.textlength(n, font=small) for n in names) > group_w - 2
    label_h = int(max(probe.textlength(n, font=small) for n in names)) + 8 if turned else 22
    left, top, plot_h = 62, 64, 300
    legend_w = sum(40 + int(probe.textlength(str(key), font=small)) for key in series)
    width = max(left + legend_w, int(probe.textlength(title, font=font)) + left + 12, left + group_w * len(names) + 20)
    image = Image.new("RGB", (width, top + plot_h + label_h + 12), "white")
    draw = ImageDraw.Draw(image)
    y0, y1 = top, top + plot_h
    for pct in range(0, 101, 20):
        y = y1 - plot_h * pct / 100
        draw.line([left, y, width - 12, y], fill=_GRID)
        draw.text((left - 8 - draw.textlength(str(pct), font=small), y - 7), str(pct), fill=_GREY, font=small)
    draw.line([left, y0, left, y1], fill=_BLACK)
    draw.line([left, y1, width - 12, y1], fill=_BLACK)
    for c, name in enumerate(names):
        gx = left + 8 + c * group_w
        for s, values in enumerate(series.values()):
            value, x = values[c], gx + s * bar_w
            colour = COLOURS[s % len(COLOURS)]
            if value is None or not math.isfinite(float(value)):
                if labelled:
                    draw.text((x + 1, y1 - 16), "n/a", fill=_GREY, font=label_font(9))
                continue
            h = plot_h * min(max(float(value), 0.0), 1.0)
            draw.rectangle([x, y1 - h, x + bar_w - 3, y1], fill=colour)
            if labelled:
                text = f"{100 * float(value):.0f}"
                draw.text((x + (bar_w - 3 - draw.textlength(text, font=label_font(10))) / 2, y1 - h - 13), text,
                          fill=_BLACK, font=label_font(10))
        centre = gx + bar_w * len(series) / 2
        if turned:
            label = Image.new("RGB", (int(probe.textlength(name, font=small)) + 4, 16), "white")
            ImageDraw.Draw(label).text((2, 0), name, fill=_BLACK, font=small)
            label = label.rotate(90, expand=True)
            image.paste(label, (int(centre - label.width / 2), y1 + 6))
        else:
            draw.text((centre - draw.textlength(name, font=small) / 2, y1 + 5), name, fill=_BLACK, font=small)
    draw.text((left, 10), title, fill=_BLACK, font=font)
    x = left
    for s, key in enumerate(series):
        draw.rectangle([x, 38, x + 14, 50], fill=COLOURS[s % len(COLOURS)])
        draw.text((x + 20, 36), str(key), fill=_BLACK, font=small)
        x += 40 + int(draw.textlength(str(key), font=small))
    _vertical_text(image, "IoU (%)", (18, (y0 + y1) // 2), font)
    return image
