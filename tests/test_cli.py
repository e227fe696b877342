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


# ---------------------------------------------------------------- eval: class lists and bad files
def _eval_dirs(tmp_path, gt, pred, name="a.png"):
    save_mask_png(tmp_path / "gt" / name, np.asarray(gt), PALETTE)
    save_mask_png(tmp_path / "pred" / name, np.asarray(pred), PALETTE)
    return ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]


def test_eval_without_classes_warns_that_voc_names_are_assumed(tmp_path, capsys):
    argv = _eval_dirs(tmp_path, [[0, 1], [2, 255]], [[0, 1], [2, 0]])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: --classes not given, so the table uses the 20 PASCAL VOC class names" in captured.err
    assert "aero" in captured.out and "bike" in captured.out
    assert main(argv + ["--classes", "cat,dog"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "aero" not in captured.out and "dog" in captured.out


@pytest.mark.parametrize("which", ["gt", "pred"])
def test_eval_refuses_values_beyond_the_class_list(tmp_path, capsys, which):
    gt, pred = [[0, 1], [2, 2]], [[0, 1], [2, 2]]
    (gt if which == "gt" else pred)[1][1] = 5
    argv = _eval_dirs(tmp_path, gt, pred)
    assert main(argv + ["--classes", "cat,dog"]) == 2
    err = capsys.readouterr().err
    what = "ground-truth mask" if which == "gt" else "prediction"
    assert f"{what} {tmp_path / which / 'a.png'} holds class value(s) 5" in err
    assert "--classes cat,dog (2 foreground classes: cat, dog) allows only 0..2 and 255" in err


def test_eval_refuses_a_prediction_that_leaves_labelled_pixels_unclassified(tmp_path, capsys):
    argv = _eval_dirs(tmp_path, [[0, 1], [2, 255]], [[0, 255], [2, 255]])
    assert main(argv + ["--classes", "cat,dog"]) == 2
    assert "leaves 1 pixel(s) at 255 (ignore) where" in capsys.readouterr().err


@pytest.mark.parametrize("classes, fragment", [
    ("cat,dog,cat", "--classes: class names must be distinct, but 'cat' appears more than once"),
    ("background,a,b,a,b", "'a', 'b' appear more than once"),
    ("names/classes.txt", "looks like a file of class names, but names/classes.txt does not exist"),
    ("classes.txt", "looks like a file of class names, but classes.txt does not exist"),
])
def test_eval_class_list_errors(tmp_path, capsys, classes, fragment):
    argv = _eval_dirs(tmp_path, [[0, 1]], [[0, 1]])
    assert main(argv + ["--classes", classes]) == 2
    assert fragment in capsys.readouterr().err


def test_eval_class_file_with_duplicates_names_the_file(tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("background\ncat\ndog\ncat\n")
    argv = _eval_dirs(tmp_path, [[0, 1]], [[0, 1]])
    assert main(argv + ["--classes", str(names)]) == 2
    assert f"--classes file {names}: class names must be distinct, but 'cat'" in capsys.readouterr().err
    names.write_text("background\ncat\ndog\n")
    assert main(argv + ["--classes", str(names)]) == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "folder"])
def test_eval_names_an_unreadable_png(tmp_path, capsys, damage):
    argv = _eval_dirs(tmp_path, np.tile([[0, 1, 2, 0]], (32, 8)), np.tile([[0, 1, 2, 0]], (32, 8)))
    bad = tmp_path / "pred" / "a.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:60])
    elif damage == "garbage":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    else:
        bad.unlink()
        bad.mkdir()
    assert main(argv + ["--classes", "cat,dog"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


def test_check_data_exits_0_with_only_notes(tmp_path, capsys):
    from PIL import Image

    from wsss_kit.data.synthetic import SyntheticDataset

    root = tmp_path / "data"
    SyntheticDataset(split="val", num_images=2, image_size=32).export(root)
    first = sorted((root / "images").glob("*.png"))[0]
    Image.open(first).convert("L").save(first)  # greyscale: a note, the image is converted when read
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(f"""
        data:
          train: {{type: datasets/folder, root: {root}, class_names: [ball, box, kite, boat, tree],
                  mask_dir: masks}}
    """))
    assert main(["check-data", str(config)]) == 0
    assert "0 error(s) in 0 item(s), 1 note(s)" in capsys.readouterr().out


def test_check_data_reports_label_mask_disagreement_and_oversized_images(tmp_path, capsys, monkeypatch):
    from wsss_kit.data.synthetic import SyntheticDataset

    root = tmp_path / "data"
    SyntheticDataset(split="val", num_images=3, image_size=32).export(root)
    rows = (root / "labels.csv").read_text().splitlines()
    name, labels = rows[1].split(",")
    rows[1] = f"{name},{'tree' if 'tree' not in labels else 'ball'}"
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(textwrap.dedent(f"""
        data:
          train: {{type: datasets/folder, root: {root}, class_names: [ball, box, kite, boat, tree],
                  mask_dir: masks}}
    """))
    assert main(["check-data", str(config)]) == 1
    out = capsys.readouterr().out
    assert "(label_mask_mismatch): 1" in out and f"image {name}: labels and ground-truth mask disagree" in out
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "1000")
    assert main(["check-data", str(config)]) == 1
    out = capsys.readouterr().out
    assert "(image_too_large): 3" in out and "is 32x32 = 0.0 Mpx, more than the limit of 0.001 Mpx (1,000 pixels)" in out
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "many")
    assert main(["check-data", str(config)]) == 2
    assert "WSSS_KIT_MAX_IMAGE_PIXELS='many' must be a positive whole number" in capsys.readouterr().err


def test_config_errors_reach_the_cli_without_a_traceback(tmp_path, capsys):
    config = tmp_path / "latin.yaml"
    config.write_bytes("data:\n  train: {type: datasets/synthetic}  # caf\xe9\n".encode("latin-1"))
    assert main(["check-data", str(config)]) == 2
    err = capsys.readouterr().err
    assert "latin.yaml' is not UTF-8 text" in err and "Traceback" not in err
    config.write_text("data:\n  train: {type: datasets/synthetic, num_images: 2, image_size: 32}\n")
    laughs = "{l0: &l0 [x, x, x, x, x, x, x, x, x, x], " + ", ".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)) + "}"
    assert main(["check-data", str(config), "--set", "data.extra=" + laughs]) == 2
    err = capsys.readouterr().err
    assert "override 'data.extra=" in err and "more than 1,000,000 values" in err and "Traceback" not in err
