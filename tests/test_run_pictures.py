"""The pictures and report of a finished run: both splits' grids with a legend, the "no ground truth"
panel, per-class IoU charts, and results.md saying why a cell is empty."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_pipeline import tiny_config

from wsss_kit.config import apply_overrides
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.pipeline import run_pipeline
from wsss_kit.pipeline.report_notes import empty_cell_notes
from wsss_kit.viz import make_grid

HATCH_GREY = (228, 228, 228)  # text_panel's background


@pytest.fixture(scope="module")
def run_without_eval_truth(tmp_path_factory):
    """A tiny run whose held-out split is a folder of images without masks."""
    root = tmp_path_factory.mktemp("nogt")
    folder = SyntheticDataset(split="val", num_images=6, image_size=64).export(root / "val")
    cfg = apply_overrides(tiny_config(), [f"data.eval={{type: datasets/folder, root: '{folder}', "
                                          "class_names: classes.txt}"])
    run_pipeline(cfg, root / "run")
    return root / "run"


def _grid_cells(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_both_splits_get_a_grid_with_a_header_and_a_legend(run_without_eval_truth):
    pictures = run_without_eval_truth / "pictures"
    for split in ("train", "eval"):
        arr = _grid_cells(pictures / f"{split}_grid.png")
        # two rows of 64 px images, plus a header, the column titles and the legend strip
        assert arr.shape[0] > 2 * 64 + 60
        legend = arr[-70:]  # the legend strip (it wraps into rows on a narrow grid)
        ball = (128, 0, 0)  # the synthetic palette's class 1 (ball) swatch is in the legend
        assert (legend == ball).all(-1).sum() > 50
    # the training split has no predictions: a panel says so instead of a white (all-ignore) mask
    train = _grid_cells(pictures / "train_grid.png")
    assert (train == HATCH_GREY).all(-1).sum() > 64 * 64  # two hatched prediction cells


def test_a_split_without_ground_truth_shows_a_no_ground_truth_panel(run_without_eval_truth):
    arr = _grid_cells(run_without_eval_truth / "pictures" / "eval_grid.png")
    right = arr[:, -70:]  # the ground-truth column is the last one
    assert (right == HATCH_GREY).all(-1).sum() > 2 * 64 * 40  # two hatched cells, not white (all-ignore) masks


def test_results_md_says_why_a_column_is_empty(run_without_eval_truth):
    text = (run_without_eval_truth / "results.md").read_text()
    assert "Empty cells (-):" in text
    assert ("- held-out mIoU, every row: data.eval has no ground truth (every mask pixel is 255, ignore)" in text)
    assert "- train mIoU of retrained head: the retrained head predicts and is scored on the held-out split" in text
    assert "## Per-class IoU (held-out split)" not in text  # nothing scored there
    assert "- `pictures/eval_grid.png`" in text and "- `train_cam/loss_curves.png`" in text


def test_per_class_iou_charts_are_drawn_for_the_scored_stages(run_without_eval_truth):
    pictures = run_without_eval_truth / "pictures"
    for stage in ("cams", "seeds", "pseudo_masks"):
        with Image.open(pictures / f"class_iou_{stage}.png") as im:
            assert im.format == "PNG" and im.width > 300
    assert not (pictures / "class_iou_eval.png").exists()  # the head is scored on data.eval only: no truth


def test_the_grid_is_taller_than_the_plain_grid_by_the_legend(run_without_eval_truth):
    arr = _grid_cells(run_without_eval_truth / "pictures" / "eval_grid.png")
    plain = make_grid([[np.zeros((64, 64, 3), np.uint8)] * 6] * 2, row_titles=["x", "y"],
                      col_titles=["image", "CAM", "seeds", "pseudo mask", "prediction", "ground truth"], pad=4)
    assert arr.shape[0] >= plain.height + 40


def test_empty_cell_notes_from_stage_records():
    stages = {
        "cams": {"complete": True, "skipped": True, "reason": "no cam section: seeds come from seeds.source"},
        "seeds": {"complete": True, "train": {"miou": 0.5}, "eval": {"miou": None}},
        "pseudo_masks": {"complete": True, "train": {"miou": 0.6}, "eval": {"miou": None}},
        "eval": {"complete": True, "eval": {"miou": None}},
    }
    rows = [("cams", "CAM"), ("seeds", "seeds"), ("pseudo_masks", "pseudo masks"), ("eval", "head")]
    assert empty_cell_notes(stages, rows) == [
        "- CAM (both columns): the stage had nothing to do (no cam section: seeds come from seeds.source).",
        "- held-out mIoU of seeds, pseudo masks and head: data.eval has no ground truth (every mask pixel is "
        "255, ignore), so nothing on it is scored; give the dataset masks to score this split.",
        "- train mIoU of head: the retrained head predicts and is scored on the held-out split (data.eval) only.",
    ]
    full = {"cams": {"complete": True, "train": {"miou": 0.5}, "eval": {"miou": 0.4}}}
    assert empty_cell_notes(full, [("cams", "CAM")]) == []
    assert empty_cell_notes({}, [("cams", "CAM")]) == [
        "- train mIoU, every row; held-out mIoU, every row: the stage has not run (yet)."]


def test_the_cli_summary_says_why_too(run_without_eval_truth, capsys):
    import json

    from wsss_kit.cli.run_config import print_run_summary

    stages = json.loads((run_without_eval_truth / "manifest.json").read_text())["stages"]
    print_run_summary(stages, run_without_eval_truth, 1.0, "dense_crf")
    out = capsys.readouterr().out
    assert "| retrained head" in out and "Empty cells (-):" in out
    assert "- held-out mIoU, every row: data.eval has no ground truth" in out


def test_large_images_are_shrunk_in_the_grid(run_without_eval_truth, monkeypatch):
    from wsss_kit.pipeline import pictures
    from wsss_kit.pipeline.context import RunContext

    cfg = json_config(run_without_eval_truth)
    ctx = RunContext(cfg, run_without_eval_truth)
    full = _grid_cells(pictures.write_pictures(ctx, 2, "train")[0])
    monkeypatch.setattr(pictures, "MAX_SIDE", 32)  # the run's 64 px images count as large now
    small = _grid_cells(pictures.write_pictures(ctx, 2, "train")[0])
    assert small.shape[0] <= full.shape[0] - 2 * 32  # two rows, each 32 px lower


def json_config(run_dir):
    from wsss_kit.config import parse_config

    return parse_config((run_dir / "config.resolved.yaml").read_text(), source="config.resolved.yaml")
