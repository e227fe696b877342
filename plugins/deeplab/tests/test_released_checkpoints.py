"""Released checkpoints through every stage: a run whose CAM network, refiner and head are given as
authors'-layout checkpoints trains nothing; ``wsss refine`` / ``wsss predict`` give the same files;
a checkpoint replaces the ImageNet files its plugin names in ``checkpoint_replaces``.

Checkpoints are built in the official layouts (IRN's ``res50_cam.pth`` aliases, PSA's
``res38_aff.pth``, MCTformer's ``resnet38_seg``) at tiny widths; the ``weights:`` files of every
node do not exist, so any attempt to read them fails the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from deeplab_official_layouts import TINY_WR38, psa_aff_state, resnet38_state
from PIL import Image

from wsss_kit.cli.main import main
from wsss_kit.pipeline.stage_table import stage_fingerprint

pytestmark = pytest.mark.usefixtures("offline")

NUM_CLASSES = 5  # the synthetic world's foreground classes
AFF = {k: v for k, v in TINY_WR38.items() if k != "head_width"}


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def irn_layout_cam(path: Path) -> Path:
    """A ResNet CAM network (timm ``test_resnet``) saved under IRN's ``resnet50.*`` aliases."""
    from wsss_cams import ResNetCAM

    torch.manual_seed(3)
    state = ResNetCAM(NUM_CLASSES, backbone="test_resnet").state_dict()
    torch.save({("resnet50." + k[len("backbone."):] if k.startswith("backbone.") else k): v
                for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """Authors'-layout checkpoints of the three trainable parts, and a missing ImageNet file."""
    root = tmp_path_factory.mktemp("released")
    cam = irn_layout_cam(root / "res50_cam.pth")
    torch.save({"module." + k: v for k, v in psa_aff_state().items()}, root / "res38_aff.pth")
    torch.save(resnet38_state(num_classes=NUM_CLASSES + 1, counters=True, seed=4), root / "resnet38_seg.pth")
    return {"cam": cam, "refiner": root / "res38_aff.pth", "head": root / "resnet38_seg.pth",
            "missing": root / "not_downloaded" / "imagenet.pth"}


def write_config(path: Path, run_dir: Path, released: dict, checkpoints: bool = True) -> Path:
    missing = str(released["missing"])
    cam = {"type": "cams/resnet_cam", "backbone": "test_resnet", "weights": missing}
    refiner = {"type": "refiners/psa_rw", **AFF, "embed_widths": [4, 4, 8], "embed_dim": 16, "weights": missing}
    head = {"type": "heads/deeplab_v1_wr38", **TINY_WR38, "weights": missing}
    if checkpoints:
        cam["checkpoint"], refiner["checkpoint"], head["checkpoint"] = (
            str(released["cam"]), str(released["refiner"]), str(released["head"]))
    cfg = {
        "run_dir": str(run_dir), "seed": 0, "device": "cpu",
        "data": {"train": {"type": "datasets/synthetic", "split": "train", "num_images": 4, "image_size": 32},
                 "eval": {"type": "datasets/synthetic", "split": "val", "num_images": 3, "image_size": 32}},
        "cam": {"model": cam, "train": {"steps": 1, "batch_size": 2},
                "infer": {"scales": [1.0], "flip": False, "batch_size": 1}},
        "seeds": {"bg_threshold": 0.2},
        "refiner": refiner,
        "refiner_train": {"steps": 1, "batch_size": 2},
        "pseudo_masks": {"batch_size": 1},
        "head": {"model": head, "loss": {"type": "losses/balanced_ce"}, "train": {"steps": 1, "batch_size": 2},
                 "infer": {"scales": [1.0]}},
        "eval": {"pictures": 0},
    }
    path.write_text(yaml.safe_dump(_plain(cfg), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def released_run(tmp_path_factory, released):
    root = tmp_path_factory.mktemp("run")
    config = write_config(root / "run.yaml", root / "run", released)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        assert main(["run", str(config)]) == 0
    return config, root / "run"


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["stages"]


def pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_a_run_from_released_checkpoints_trains_nothing_and_scores_every_stage(released_run, released):
    _, run_dir = released_run
    stages = manifest(run_dir)
    for stage, part in (("train_cam", "cam"), ("train_refiner", "refiner"), ("train_head", "head")):
        rec = stages[stage]
        assert rec["complete"] and rec["skipped"], stage
        assert rec["reason"] == f"from checkpoint {released[part]}" and rec["checkpoint"] == str(released[part])
        assert not (run_dir / stage).exists()  # no model.pt, nothing trained
    for stage in ("cams", "seeds", "pseudo_masks"):
        for split in ("train", "eval"):
            assert 0.0 <= stages[stage][split]["miou"] <= 1.0, (stage, split)
    assert 0.0 <= stages["eval"]["eval"]["miou"] <= 1.0
    assert len(pngs(run_dir / "predictions" / "eval")) == 3


def test_the_dry_run_says_from_checkpoint(released, tmp_path, capsys):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run", released)
    assert main(["run", str(config), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    for stage, part in (("train_cam", "cam"), ("train_refiner", "refiner"), ("train_head", "head")):
        line = next(line for line in plan.splitlines() if line.strip().startswith(stage + " "))
        assert "nothing to do" in line and f"from checkpoint {released[part]}" in line
    assert not (tmp_path / "run").exists()


def test_refine_and_predict_with_checkpoint_give_the_run_files(released_run, released, tmp_path, capsys):
    _, run_dir = released_run
    # the same config without checkpoint: keys, inputs from the run's cams, weights from --checkpoint
    config = write_config(tmp_path / "plain.yaml", run_dir, released, checkpoints=False)
    out = tmp_path / "out"
    assert main(["refine", str(config), "--checkpoint", str(released["refiner"]), "--out", str(out)]) == 0
    assert main(["predict", str(config), "--checkpoint", str(released["head"]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"weights: checkpoint {released['refiner']}" in text and "pseudo_masks: mIoU" in text
    masks, preds = out / "pseudo_masks" / "train", out / "predictions" / "eval"
    assert pngs(masks).keys() == pngs(run_dir / "pseudo_masks" / "train").keys()
    for name, mask in pngs(masks).items():
        assert np.array_equal(mask, pngs(run_dir / "pseudo_masks" / "train")[name]), name
    for name, pred in pngs(preds).items():
        assert np.array_equal(pred, pngs(run_dir / "predictions" / "eval")[name]), name
    stages = manifest(run_dir)
    refine_summary = json.loads((masks / "summary.json").read_text())
    assert refine_summary["pseudo_masks"]["miou"] == pytest.approx(stages["pseudo_masks"]["train"]["miou"])
    assert refine_summary["images"] == 4 and refine_summary["input"] == "cams"
    predict_summary = json.loads((preds / "summary.json").read_text())
    assert predict_summary["predictions"]["miou"] == pytest.approx(stages["eval"]["eval"]["miou"])


def test_refine_is_sharded_and_resumable(released_run, released, tmp_path, capsys):
    config, run_dir = released_run  # the node's checkpoint: is used without --checkpoint
    out = tmp_path / "out"
    assert main(["refine", str(config), "--shard", "0/2", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "other shards pending: 2 of 4" in first and not (out / "pseudo_masks" / "train" / "summary.json").exists()
    assert main(["refine", str(config), "--shard", "1/2", "--out", str(out)]) == 0
    assert (out / "pseudo_masks" / "train" / "summary.json").is_file()
    assert main(["refine", str(config), "--out", str(out)]) == 0
    assert "weights: not needed" in capsys.readouterr().out
    assert pngs(out / "pseudo_masks" / "train").keys() == pngs(run_dir / "pseudo_masks" / "train").keys()


def test_predict_without_checkpoint_reads_the_run_model_and_names_it(released, tmp_path, capsys):
    config = write_config(tmp_path / "plain.yaml", tmp_path / "empty_run", released, checkpoints=False)
    assert main(["predict", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty_run" / "train_head" / "model.pt") in err


def test_a_wrong_layout_checkpoint_names_the_file(released, released_run, tmp_path, capsys):
    config, _ = released_run
    # an AffinityNet checkpoint is no DeepLab head, and a CAM network is no AffinityNet
    assert main(["predict", str(config), "--checkpoint", str(released["refiner"]), "--out", str(tmp_path)]) == 2
    assert str(released["refiner"]) in capsys.readouterr().err
    assert main(["refine", str(config), "--checkpoint", str(released["cam"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "WeightsError" in err or str(released["cam"]) in err
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("command", ["refine", "predict"])
def test_a_hub_tag_is_no_checkpoint(released_run, tmp_path, capsys, command):
    config, _ = released_run
    assert main([command, str(config), "--checkpoint", "timm:resnet50.a1_in1k", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint: 'timm:resnet50.a1_in1k' is a hub tag" in err and "a checkpoint is a file" in err


def test_the_checkpoint_is_part_of_the_fingerprints(released, tmp_path):
    with_ckpt = yaml.safe_load(write_config(tmp_path / "a.yaml", tmp_path / "r", released).read_text())
    without = yaml.safe_load(write_config(tmp_path / "b.yaml", tmp_path / "r", released, checkpoints=False).read_text())
    without["cam"]["model"]["checkpoint"] = with_ckpt["cam"]["model"]["checkpoint"]
    without["refiner"]["checkpoint"] = with_ckpt["refiner"]["checkpoint"]
    # only the head's checkpoint differs: the stages before it keep their fingerprints
    for stage in ("train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"):
        assert stage_fingerprint(with_ckpt, stage) == stage_fingerprint(without, stage)
    for stage in ("train_head", "eval"):
        assert stage_fingerprint(with_ckpt, stage) != stage_fingerprint(without, stage)
