"""The whole pipeline end to end at toy size: stages, artifacts, resume, report and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from wsss_kit.cli.main import demo_config_path, main
from wsss_kit.config import apply_overrides, parse_config
from wsss_kit.errors import ConfigError
from wsss_kit.pipeline import STAGES, run_pipeline

TINY = [
    "data.train.num_images=12", "data.train.image_size=64",
    "data.eval.num_images=6", "data.eval.image_size=64",
    "cam.augment.crop_size=64", "cam.train.steps=3", "cam.train.batch_size=4",
    "cam.infer.scales=[1.0]",
    "head.augment.crop_size=64", "head.train.steps=2", "head.train.batch_size=4",
    "refiner.workers=0", "eval.pictures=2",
]


def tiny_config(extra=()):
    cfg = parse_config(demo_config_path().read_text(), source="demo.yaml")
    return apply_overrides(cfg, TINY + list(extra))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    stages = run_pipeline(tiny_config(), run_dir)
    return run_dir, stages


def test_every_stage_completes_and_writes_its_artifacts(finished_run):
    run_dir, stages = finished_run
    assert all(stages[s]["complete"] for s in STAGES)
    for folder in ("cams/train", "cams/eval"):
        assert len(list((run_dir / folder).glob("*.npz"))) == (12 if folder.endswith("train") else 6)
    for folder in ("seeds", "pseudo_masks"):
        assert len(list((run_dir / folder / "train").glob("*.png"))) == 12
        assert len(list((run_dir / folder / "eval").glob("*.png"))) == 6
    assert len(list((run_dir / "predictions" / "eval").glob("*.png"))) == 6
    mask = Image.open(next((run_dir / "pseudo_masks" / "train").glob("*.png")))
    assert mask.mode == "P" and mask.size == (64, 64)
    assert set(np.unique(np.asarray(mask))) <= set(range(6))
    for name in ("train_cam/model.pt", "train_head/model.pt", "train_cam/log.csv", "results.md",
                 "results.json", "config.resolved.yaml", "provenance.json", "manifest.json",
                 "pictures/eval_grid.png"):
        assert (run_dir / name).is_file(), name


def test_metrics_are_recorded_per_split(finished_run):
    _, stages = finished_run
    for stage in ("cams", "seeds", "pseudo_masks"):
        for split in ("train", "eval"):
            miou = stages[stage][split]["miou"]
            assert 0.0 <= miou <= 1.0
            assert len(stages[stage][split]["iou"]) == 6  # background + 5 classes
    assert 0.0 <= stages["cams"]["train"]["best_threshold"] < 0.6
    assert stages["seeds"]["bg_threshold"] == stages["cams"]["train"]["best_threshold"]
    assert 0.0 <= stages["eval"]["eval"]["miou"] <= 1.0
    provenance = json.loads((finished_run[0] / "provenance.json").read_text())
    assert provenance["wsss_kit"] and any(p["name"] == "resnet_cam" for p in provenance["plugins"])


def test_rerun_skips_complete_stages(finished_run, capsys):
    run_dir, stages = finished_run
    before = {s: stages[s]["finished"] for s in STAGES}
    again = run_pipeline(tiny_config(), run_dir)
    assert {s: again[s]["finished"] for s in STAGES} == before
    assert capsys.readouterr().out.count("complete, skipped") == len(STAGES)


def test_changed_settings_are_refused_until_restarted(finished_run):
    run_dir, _ = finished_run
    changed = tiny_config(["head.train.steps=3"])
    with pytest.raises(ConfigError, match="stage 'train_head' .* completed with different settings"):
        run_pipeline(changed, run_dir)
    stages = run_pipeline(changed, run_dir, restart="train_head")
    assert stages["train_head"]["steps"] == 3
    assert stages["cams"]["complete"]


def test_unknown_top_level_key_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.refinr: unknown key \(did you mean 'refiner'\?\)"):
        run_pipeline(tiny_config(["refinr.x=1"]), tmp_path)


def test_stage_needs_its_upstream(tmp_path):
    with pytest.raises(ConfigError, match="needs train_cam, cams first"):
        run_pipeline(tiny_config(), tmp_path, stages=["seeds"])


def test_cli_demo_runs_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out)] + [a for item in TINY for a in ("--set", item)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "pseudo masks" in text and "retrained head" in text and "held-out mIoU" in text
    assert (out / "results.md").read_text().startswith("# Results")


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cam: {model: {type: cams/resnet_cm}}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_a_bad_late_stage_keyword_fails_before_any_training(tmp_path):
    with pytest.raises(ConfigError, match=r"refiner\.iters: refiners/dense_crf has no keyword 'iters'"):
        run_pipeline(tiny_config(["refiner.iters=3"]), tmp_path)
    assert not (tmp_path / "train_cam").exists()


def test_training_stages_are_deterministic_under_the_config_seed(tmp_path):
    import torch

    cfg = tiny_config()
    run_pipeline(cfg, tmp_path / "a", stages=["train_cam"])
    torch.rand(1000)  # a different global RNG state must not matter
    run_pipeline(cfg, tmp_path / "b", stages=["train_cam"])
    a = torch.load(tmp_path / "a" / "train_cam" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "train_cam" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_half_done_stage_refuses_new_settings(tmp_path):
    from wsss_kit.pipeline import Shard

    run_pipeline(tiny_config(), tmp_path, shard=Shard(0, 2))  # stops after the CAMs of shard 0
    stages = json.loads((tmp_path / "manifest.json").read_text())["stages"]
    assert stages["train_cam"]["complete"] and not stages["cams"]["complete"]
    with pytest.raises(ConfigError, match="stage 'cams' .* was started with different settings"):
        run_pipeline(tiny_config(["cam.infer.scales=[1.0, 0.5]"]), tmp_path, shard=Shard(1, 2))
    done = run_pipeline(tiny_config(), tmp_path, shard=Shard(1, 2))  # the other shard completes it
    assert done["cams"]["complete"] and not done["seeds"]["complete"]  # seeds: shard 0's half pending
    assert len(list((tmp_path / "cams" / "train").glob("*.npz"))) == 12


def test_other_shards_leave_training_to_shard_zero(tmp_path, capsys):
    from wsss_kit.pipeline import Shard

    stages = run_pipeline(tiny_config(), tmp_path, shard=Shard(1, 2))
    assert "train_cam" not in stages
    assert "trained by shard 0 only" in capsys.readouterr().out
    assert not (tmp_path / "train_cam").exists()


def test_a_refiner_may_return_integer_masks_of_any_dtype(tmp_path):
    import torch

    import wsss_kit
    from wsss_kit.registry import default_registry

    @wsss_kit.register("refiners", "test_uint8_masks")
    class Uint8Masks(wsss_kit.Refiner):
        def refine(self, images, cams, labels):
            return wsss_kit.cams_to_seeds(cams, 0.5).to(torch.uint8)

    try:
        stages = run_pipeline(tiny_config(["refiner={type: refiners/test_uint8_masks}"]), tmp_path,
                              stages=["train_cam", "cams", "seeds", "pseudo_masks"])
    finally:
        default_registry().unregister("refiners", "test_uint8_masks")
    assert stages["pseudo_masks"]["complete"]
    mask = np.asarray(Image.open(next((tmp_path / "pseudo_masks" / "train").glob("*.png"))))
    assert mask.shape == (64, 64)
