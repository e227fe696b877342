"""The ``wsss`` command line: plugins, eval, check-data, and error reporting."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from wsss_kit.cli.main import main
from wsss_kit.data.image_io import save_mask_png
from wsss_kit.registry import default_registry

PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def test_plugins_lists_every_kind_with_distribution_and_version(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for header in ("cams", "datasets", "heads", "losses", "prompts", "refiners"):
        assert f"{header} (entry-point group wsss_kit.{header}):" in out
    lines = out.splitlines()
    crf = next(line for line in lines if line.strip().startswith("dense_crf"))
    assert "wsss-kit 0.1.0" in crf and "wsss_kit.crf.refiner:DenseCRF" in crf
    assert any(line.strip().startswith("resnet_cam") and "wsss-kit-cams" in line for line in lines)
    assert any(line.strip().startswith("smp") and "wsss-kit-deeplab" in line for line in lines)


def test_plugins_shows_broken_ones_with_the_reason(tmp_path, monkeypatch, capsys):
    info = tmp_path / "tp_cli_broken-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-cli-broken\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[wsss_kit.refiners]\nexploding = tp_cli_broken:Thing\n")
    (tmp_path / "tp_cli_broken.py").write_text("raise RuntimeError('this plugin cannot start')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    default_registry().refresh()
    try:
        assert main(["plugins", "--kind", "refiners"]) == 0
        out = capsys.readouterr().out
        line_no = next(i for i, line in enumerate(out.splitlines()) if "exploding" in line)
        lines = out.splitlines()
        assert "tp-cli-broken 0.3" in lines[line_no] and "[broken]" in lines[line_no]
        assert "RuntimeError: this plugin cannot start" in lines[line_no + 1]
        assert "dense_crf" in out  # the others still load
    finally:
        monkeypatch.undo()
        default_registry().refresh()


def test_eval_matches_a_hand_computed_miou(tmp_path, capsys):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]])
    pred = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 0, 0], [2, 0, 1, 1]])
    save_mask_png(gt_dir / "a.png", gt, PALETTE)
    save_mask_png(pred_dir / "a.png", pred, PALETTE)
    # background: tp 3, fp 1, fn 1 -> 3/5; class 1: tp 4, fp 1, fn 0 -> 4/5; class 2: tp 3, fn 1 -> 3/4
    expected = (3 / 5 + 4 / 5 + 3 / 4) / 3
    assert main(["eval", "--pred", str(pred_dir), "--gt", str(gt_dir), "--classes", "cat,dog"]) == 0
    out = capsys.readouterr().out
    assert f"mIoU {100 * expected:.2f} over 1 images" in out
    assert "80.0" in out and "75.0" in out and "60.0" in out


def test_eval_reports_missing_predictions(tmp_path, capsys):
    gt = np.zeros((4, 4), dtype=np.int64)
    for name in ("a", "b"):
        save_mask_png(tmp_path / "gt" / f"{name}.png", gt, PALETTE)
    save_mask_png(tmp_path / "pred" / "a.png", gt, PALETTE)
    args = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--classes", "cat,dog"]
    assert main(args) == 2
    assert "1 of 2 ground-truth masks have no prediction" in capsys.readouterr().err
    assert main(args + ["--allow-missing"]) == 0


def test_check_data_lists_every_problem_in_one_pass(tmp_path, capsys):
    from wsss_kit.data.synthetic import SyntheticDataset

    root = tmp_path / "data"
    SyntheticDataset(split="val", num_images=6, image_size=32).export(root)
    images = sorted((root / "images").glob("*.png"))
    masks = sorted((root / "masks").glob("*.png"))
    images[0].write_bytes(b"not an image at all")                     # unreadable
    masks[1].unlink()                                                 # missing mask
    save_mask_png(masks[2], np.zeros((16, 16), dtype=np.int64))       # mis-sized mask
    save_mask_png(masks[3], np.full((32, 32), 9, dtype=np.int64))     # out-of-range values
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(f"""
        data:
          train: {{type: datasets/folder, root: {root}, class_names: [ball, box, kite, boat, tree],
                  mask_dir: masks, allow_empty_labels: true}}
    """))
    assert main(["check-data", str(config)]) == 1
    out = capsys.readouterr().out
    for stem in (images[0].stem, masks[1].stem, masks[2].stem, masks[3].stem):
        assert stem in out, stem


def test_unknown_plugin_in_a_config_is_reported_on_stderr(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  train: {type: datasets/synthtic}\n")
    assert main(["check-data", str(config)]) == 2
    err = capsys.readouterr().err
    assert "data.train.type: unknown datasets plugin 'synthtic'" in err
    assert "did you mean 'synthetic'" in err


@pytest.mark.parametrize("argv", [["run", "missing.yaml"], ["check-data", "missing.yaml"]])
def test_missing_config_file(argv, capsys):
    assert main(argv) == 2
    assert "config file 'missing.yaml' does not exist" in capsys.readouterr().err
