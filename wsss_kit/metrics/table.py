"""Result tables in the papers' layout: one row per method or stage, per-class IoU in percent.

``format_iou_table`` prints ``bkg``, each class, then ``mIoU``; a table too wide for
``max_width`` characters (VOC's 21 classes next to long method names, COCO's 81) is printed
transposed, classes down and methods across, so that it stays readable in a terminal or log.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

import torch

__all__ = ["FORMATS", "format_iou_table", "format_stage_table"]

FORMATS = ("text", "markdown", "csv")

SHORT_NAMES: dict[str, str] = {
    "background": "bkg",
    "aeroplane": "aero",
    "bicycle": "bike",
    "diningtable": "table",
    "dining table": "table",
    "motorbike": "mbike",
    "pottedplant": "plant",
    "potted plant": "plant",
    "tvmonitor": "tv",
    "tv monitor": "tv",
}
"""Column headings the WSSS papers use for the longer VOC class names."""


def _check_fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def _to_floats(values: Any, what: str) -> list[float]:
    if isinstance(values, Mapping):
        if "iou" not in values:
            raise ValueError(f"{what}: a mapping must hold per-class IoUs under 'iou', got keys {sorted(values)}")
        values = values["iou"]
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().reshape(-1).tolist()
    try:
        return [float("nan") if v is None else float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: per-class IoUs must be numbers, got {values!r}") from exc


def _fmt_number(v: float, decimals: int, missing: str) -> str:
    return missing if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{decimals}f}"


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _render(header: list[str], body: list[list[str]], fmt: str, footer: list[str] | None = None) -> str:
    """Lay out cells; the first column is left-aligned, the others right-aligned."""
    rows = body + ([footer] if footer else [])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        sep = "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"
        return "\n".join([line(header), sep] + [line(r) for r in rows])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def text_line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first] + rest).rstrip()

    rule = "-" * len(text_line(["-" * w for w in widths]))
    out = [text_line(header), rule] + [text_line(r) for r in body]
    if footer:
        out += [rule, text_line(footer)]
    return "\n".join(out)


def format_iou_table(
    rows: Mapping[str, Any],
    class_names: Sequence[str],
    fmt: str = "text",
    *,
    transpose: bool | None = None,
    decimals: int = 1,
    scale: float = 100.0,
    short_names: bool | None = None,
    max_width: int = 120,
    first_header: str = "method",
) -> str:
    """Per-class IoU table, e.g. for pseudo masks of several methods or stages.

    Args:
        rows: name → per-class IoU, ``K`` values in [0, 1] (a sequence, a tensor or the dict from
            :meth:`ConfusionMatrix.compute`); NaN (class never seen) prints as ``-`` and is left
            out of the mIoU column.
        class_names: ``K`` names, background first (printed as ``bkg``).
        fmt: ``"text"``, ``"markdown"`` or ``"csv"``.
        transpose: classes as rows and methods as columns. ``None``: for text, transpose when the
            wide table would exceed ``max_width`` characters; for markdown/csv, never.
        decimals: digits after the point (1, as in the papers).
        scale: factor from the given values to the printed ones (100 → percent; 1 when the
            values are percentages already).
        short_names: use the papers' short headings (``aero``, ``mbike``, ``tv``...); default
            on for text and markdown, off for csv.
        max_width: line width the automatic transposition aims for.
        first_header: heading of the row-name column.

    Returns:
        the table as a string without a trailing newline.
    """
    fmt = _check_fmt(fmt)
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("class_names must not be empty (background first)")
    if short_names is None:
        short_names = fmt != "csv"
    headings = ["bkg"] + [SHORT_NAMES.get(n, n) if short_names else n for n in names[1:]]

    table: list[tuple[str, list[float]]] = []
    for name, values in rows.items():
        vals = _to_floats(values, f"row {name!r}")
        if len(vals) != len(names):
            raise ValueError(
                f"row {name!r} has {len(vals)} IoU values but there are {len(names)} class names "
                f"(background included)"
            )
        table.append((str(name), [v * scale for v in vals]))

    def cells(vals: list[float]) -> list[str]:
        missing = "" if fmt == "csv" else "-"
        return [_fmt_number(v, decimals, missing) for v in vals + [_nanmean(vals)]]

    wide_header = [first_header] + headings + ["mIoU"]
    wide_body = [[name] + cells(vals) for name, vals in table]
    if transpose is None:
        transpose = False
        if fmt == "text":
            wide = _render(wide_header, wide_body, "text")
            transpose = max(len(line) for line in wide.splitlines()) > max_width
    if not transpose:
        return _render(wide_header, wide_body, fmt)

    columns = [cells(vals) for _, vals in table]
    tall_header = ["class"] + [name for name, _ in table]
    tall_body = [[headings[i]] + [col[i] for col in columns] for i in range(len(headings))]
    footer = ["mIoU"] + [col[-1] for col in columns]
    if fmt == "text":
        return _render(tall_header, tall_body, fmt, footer)
    return _render(tall_header, tall_body + [footer], fmt)


def _fmt_extra(v: Any, missing: str) -> str:
    if v is None:
        return missing
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return missing if math.isnan(v) else f"{v:.4g}"
    return str(v)


def format_stage_table(
    stages: Sequence[tuple[str, float] | tuple[str, float, Mapping[str, Any]]],
    fmt: str = "text",
    *,
    decimals: int = 1,
    scale: float = 100.0,
) -> str:
    """Stage-wise summary, e.g. ``cams 48.2 / seeds 51.0 / pseudo masks 60.3 / final 62.1``.

    Args:
        stages: ``(name, miou)`` or ``(name, miou, extra)`` with ``miou`` in [0, 1] (see
            ``scale``) or ``None`` when not evaluated, and ``extra`` a mapping of further
            columns (threshold, seconds, ...); columns appear in first-seen order.
        fmt: ``"text"``, ``"markdown"`` or ``"csv"``.
        decimals: digits after the point of the mIoU column.
        scale: factor from the given mIoU to the printed one (100 → percent).
    """
    fmt = _check_fmt(fmt)
    missing = "" if fmt == "csv" else "-"
    parsed: list[tuple[str, Any, Mapping[str, Any]]] = []
    for i, item in enumerate(stages):
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ValueError(f"stage {i} must be (name, miou) or (name, miou, extra), got {item!r}")
        name, miou = item[0], item[1]
        extra = item[2] if len(item) == 3 else {}
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise ValueError(f"stage {name!r}: extra columns must be a mapping, got {type(extra).__name__}")
        parsed.append((str(name), miou, extra))
    keys: list[str] = []
    for _, _, extra in parsed:
        keys += [str(k) for k in extra if str(k) not in keys]
    header = ["stage", "mIoU"] + keys
    body = []
    for name, miou, extra in parsed:
        value = missing if miou is None else _fmt_number(float(miou) * scale, decimals, missing)
        body.append([name, value] + [_fmt_extra(extra.get(k), missing) for k in keys])
    return _render(header, body, fmt)
