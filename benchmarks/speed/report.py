"""The speed results as a markdown table and a PNG (one panel per measure: seconds per unit
against the swept input, one line per variant), drawn with :func:`wsss_kit.charts.loss_curve_chart`
(Pillow; matplotlib is not a dependency)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from PIL import Image


def _fmt_s(value: float) -> str:
    return f"{value:.3g} s" if value >= 0.01 else f"{value * 1000:.3g} ms"


def _point_label(measure: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    return f"{measure['axis']} {point['x']}"


def markdown_table(results: Mapping[str, Any], largest_only: bool = False) -> str:
    """One row per (measure, sweep point, variant): median seconds per unit with min–max, peak RSS
    (in brackets its rise during a call: the call's own) and CUDA memory, the ratio to the baseline;
    ``largest_only``: the largest point of each measure only. Measures that failed get a row saying so."""
    lines = ["| measure | input | variant | per unit (median, min-max) | peak RSS (+ during a call) "
             "| ratio to baseline |",
             "|---|---|---|---|---|---|"]
    for name, m in results["measures"].items():
        if m.get("error"):
            lines.append(f"| {name} | | | failed: {m['error'].splitlines()[-1][:80]} | | |")
            continue
        points = m["points"][-1:] if largest_only else m["points"]
        for point in points:
            for variant, row in point["variants"].items():
                units = row.get("units_per_call", 1)
                per = row["per_unit_s"]
                spread = f"{_fmt_s(row['min_s'] / units)}-{_fmt_s(row['max_s'] / units)}"
                memory = f"{row['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row else ""
                if "peak_rss_above_start_mb" in row:  # the call's own working memory
                    memory += f" (+{row['peak_rss_above_start_mb']:.0f})"
                if "peak_cuda_mb" in row:
                    memory += f", CUDA {row['peak_cuda_mb']:.0f} MB"
                ratio = row.get(f"ratio_to_{m['baseline']}")
                ratio_text = f"{ratio:.2f}x" if ratio is not None else ("baseline" if variant == m["baseline"] else "")
                lines.append(f"| {name} | {_point_label(m, point)} | {variant} | {_fmt_s(per)} per {m['unit']} "
                             f"({spread}) | {memory} | {ratio_text} |")
    return "\n".join(lines) + "\n"


def speed_chart(results: Mapping[str, Any]) -> Image.Image:
    """One panel per measure that ran (seconds per unit against its sweep axis, per variant), stacked."""
    from wsss_kit.charts import loss_curve_chart

    panels = []
    for name, m in results["measures"].items():
        if m.get("error") or not m.get("points"):
            continue
        rows = [{"step": float(p["x"]), **{v: r["per_unit_s"] for v, r in p["variants"].items()}}
                for p in m["points"]]
        panels.append(loss_curve_chart(rows, title=f"{name}: {m['title']}", size=(820, 380),
                                       xlabel=m["axis_label"], ylabel=f"s per {m['unit']} (median)"))
    if not panels:
        raise ValueError("speed_chart: no measure has results to plot")
    width = max(p.width for p in panels)
    image = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    top = 0
    for panel in panels:
        image.paste(panel, (0, top))
        top += panel.height
    return image


def write_chart(results: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """:func:`speed_chart` saved atomically as PNG at ``path``."""
    from wsss_kit.viz import save_png

    return save_png(path, speed_chart(results))
