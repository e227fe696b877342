"""Charts and picture parts people read: the TrueType label font, loss curves, per-class IoU bars,
legend strips, "no picture" panels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from wsss_kit.charts import (
    LOSS_CURVES_NAME,
    class_iou_chart,
    loss_curve_chart,
    loss_terms,
    write_loss_curves,
    y_scale,
)
from wsss_kit.viz import class_legend_entries, label_font, legend_strip, make_grid, text_panel

PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]


def _ink(image: Image.Image | np.ndarray) -> int:
    """Number of dark (text/line) pixels."""
    arr = np.asarray(image.convert("L") if isinstance(image, Image.Image) else Image.fromarray(image).convert("L"))
    return int((arr < 100).sum())


def test_label_font_is_a_scalable_truetype_font():
    font = label_font(28)
    assert isinstance(font, ImageFont.FreeTypeFont)  # Pillow's shipped TrueType font, not the bitmap one
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    big = draw.textbbox((0, 0), "Background", font=font)
    small = draw.textbbox((0, 0), "Background", font=label_font(12))
    assert big[3] - big[1] > 1.8 * (small[3] - small[1])
    with pytest.raises(ValueError, match="font size"):
        label_font(0)


def test_loss_terms_put_loss_first_and_leave_out_the_clock_and_lr():
    rows = [{"step": 1, "cls": 0.5, "loss": 1.0, "aux": 0.1, "lr": 0.1, "seconds": 1.0, "images_per_s": 5.0}]
    assert loss_terms(rows) == ["loss", "cls", "aux"]


def test_y_scale_is_log_only_for_a_wide_positive_range():
    assert y_scale([10.0, 0.01]) == "log"
    assert y_scale([1.0, 0.5]) == "linear"
    assert y_scale([10.0, -0.01]) == "linear"  # a negative term cannot go on a log axis


def test_loss_curve_chart_draws_every_term_in_its_colour():
    rows = [{"step": s, "loss": 2.0 / s, "cls": 1.0 / s, "lr": 0.1} for s in range(1, 61)]
    chart = loss_curve_chart(rows, "title")
    arr = np.asarray(chart)
    assert chart.mode == "RGB" and chart.width > 600 and chart.height > 300
    for colour in ((31, 119, 180), (255, 127, 14)):  # the first two series colours: loss, cls
        assert (arr == colour).all(-1).sum() > 50
    with pytest.raises(ValueError, match="no finite loss"):
        loss_curve_chart([{"step": 1, "loss": float("nan"), "lr": 0.1}])


def test_write_loss_curves_reads_log_csv_and_writes_a_png_beside_it(tmp_path):
    log = tmp_path / "stage" / "log.csv"
    log.parent.mkdir()
    log.write_text("step,loss,cls,lr,seconds\n" + "".join(f"{s},{3 / s},{1 / s},0.01,{s * 0.1}\n"
                                                         for s in range(1, 30)))
    path = write_loss_curves(log)
    assert path == log.with_name(LOSS_CURVES_NAME)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600
    empty = tmp_path / "empty.csv"
    empty.write_text("step,loss,lr,seconds\n")
    assert write_loss_curves(empty) is None and not (tmp_path / LOSS_CURVES_NAME).exists()


def test_class_iou_chart_bars_have_the_values_height():
    chart = class_iou_chart({"train": [1.0, 0.5, None]}, ["background", "a", "b"], "t")
    arr = np.asarray(chart)
    blue = (arr == (31, 119, 180)).all(-1)[60:]  # below the title and legend swatch
    cols = np.nonzero(blue.any(0))[0]
    heights = [int(blue[:, c].sum()) for c in cols]
    # two bars (the None is "n/a"): the full one is twice as tall as the half one
    assert max(heights) == pytest.approx(2 * min(heights), abs=2)
    with pytest.raises(ValueError, match="series 'x' has 2 values for 3 classes"):
        class_iou_chart({"x": [0.1, 0.2]}, ["background", "a", "b"])
    with pytest.raises(ValueError, match="no series"):
        class_iou_chart({}, ["a"])


def test_class_legend_entries_follow_the_palette_and_name_ignore():
    entries = class_legend_entries(["ball", "box", "kite"], PALETTE)
    assert entries[0] == ("background", (0, 0, 0)) and entries[2] == ("box", (0, 128, 0))
    assert entries[-1] == ("ignore / none", (255, 255, 255))
    assert class_legend_entries(["background", "ball"], PALETTE)[:2] == entries[:2]
    with pytest.raises(ValueError, match="palette of 4 colours for 5 classes"):
        class_legend_entries(["a", "b", "c", "d"], PALETTE)


def test_legend_strip_shows_each_colour_and_wraps_to_the_width():
    entries = class_legend_entries(["ball", "box", "kite"], PALETTE)
    wide = legend_strip(entries, 900, cam_scale=True)
    narrow = legend_strip(entries, 150, cam_scale=True)
    assert wide.width == 900 and narrow.width == 150 and narrow.height > 2 * wide.height
    arr = np.asarray(wide)
    for _, colour in entries[1:-1]:
        assert (arr == colour).all(-1).sum() > 20
    assert _ink(wide) > 100  # the names are drawn


def test_text_panel_is_hatched_grey_with_the_text():
    panel = text_panel((64, 80), "no ground truth")
    assert panel.shape == (64, 80, 3) and panel.dtype == np.uint8
    assert not (panel == 255).all(-1).any()  # never white: not an all-ignore mask
    assert _ink(panel) > 20
    with pytest.raises(ValueError, match="panel size"):
        text_panel((0, 5), "x")


def test_make_grid_columns_are_as_wide_as_their_titles():
    tiny = np.zeros((8, 8, 3), np.uint8)
    grid = make_grid([[tiny, tiny]], col_titles=["a long column title", "b"], pad=2)
    title_w = ImageDraw.Draw(grid).textlength("a long column title", font=label_font())
    assert grid.width >= title_w + 8 + 3 * 2


def test_class_iou_chart_of_many_classes_stays_a_readable_width():
    names = ["background"] + [f"class {i}" for i in range(80)]  # COCO's 81
    chart = class_iou_chart({"train": [0.5] * 81, "held-out": [0.4] * 81}, names)
    assert 81 * 2 * 8 < chart.width < 2400
