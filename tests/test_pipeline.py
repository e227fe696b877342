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
from wsss_kit.pipeline.context import RunContext

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
    assert provenance["machine"]["torch_threads"] >= 1 and provenance["machine"]["cpu"]


def test_rerun_skips_complete_stages(finished_run, capsys):
    run_dir, stages = finished_run
    before = {s: stages[s]["finished"] for s in STAGES}
    again = run_pipeline(tiny_config(), run_dir)
    assert {s: again[s]["finished"] for s in STAGES} == before
    assert capsys.readouterr().out.count("complete, skipped") == len(STAGES)


def test_changed_settings_are_refused_until_restarted(finished_run):
    run_dir, _ = finished_run
    changed = tiny_config(["head.train.steps=3"])
    with pytest.raises(ConfigError, match=r"stage train_head .* completed with other settings: head\.train\.steps: 2 → 3\. .*--restart train_head"):
        run_pipeline(changed, run_dir)
    stages = run_pipeline(changed, run_dir, restart="train_head")
    assert stages["train_head"]["steps"] == 3
    assert stages["cams"]["complete"]


def test_unknown_top_level_key_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"refinr: unknown key \(did you mean 'refiner'\?\)"):
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
    with pytest.raises(ConfigError, match=r"stage cams .* was started with other settings: cam\.infer\.scales: \[1\.0\] → \[1\.0, 0\.5\]"):
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


# --------------------------------------------------------------------------- trainable refiners
TRAIN_REFINER = ["refiner={type: refiners/test_trainable}",
                 "refiner_train={steps: 3, batch_size: 4, lr: 0.1, optimizer: sgd, checkpoint_every: 2}",
                 "refiner_augment={crop_size: 48, scale_range: [0.9, 1.1]}"]
UP_TO_PSEUDO_MASKS = ["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"]


@pytest.fixture(scope="module")
def trainable_refiner():
    """A tiny trainable refiner registered in this process: a 3x3 conv trained with cross-entropy
    on the seeds; it records the class names the pipeline gives it."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import wsss_kit
    from wsss_kit.registry import default_registry

    class TinyTrainable(wsss_kit.Refiner, nn.Module):
        trainable = True
        built_with: list = []

        def __init__(self, num_classes: int, class_names=None, width: int = 3):
            nn.Module.__init__(self)
            self.conv = nn.Conv2d(3, num_classes + 1, width, padding=width // 2)
            TinyTrainable.built_with.append(list(class_names))

        def training_step(self, batch):
            assert batch["image"].shape[-2:] == batch["target"].shape[-2:] == (48, 48)
            loss = F.cross_entropy(self.conv(batch["image"]), batch["target"], ignore_index=255)
            return {"loss": loss, "ce": loss.detach()}

        def refine(self, images, cams, labels):
            return self.conv(images).softmax(1)

    wsss_kit.register("refiners", "test_trainable", TinyTrainable)
    yield TinyTrainable
    default_registry().unregister("refiners", "test_trainable")


@pytest.fixture(scope="module")
def refined_run(tmp_path_factory, trainable_refiner):
    run_dir = tmp_path_factory.mktemp("refined")
    stages = run_pipeline(tiny_config(TRAIN_REFINER), run_dir, stages=UP_TO_PSEUDO_MASKS)
    return run_dir, stages


def test_a_non_trainable_refiner_skips_train_refiner(finished_run):
    run_dir, stages = finished_run
    assert stages["train_refiner"]["complete"] and stages["train_refiner"]["skipped"]
    assert "not trainable" in stages["train_refiner"]["reason"]
    assert not (run_dir / "train_refiner").exists()
    assert "pseudo masks (dense_crf) " in (run_dir / "results.md").read_text()


def test_a_trainable_refiner_trains_on_the_train_seeds_and_makes_the_pseudo_masks(refined_run, trainable_refiner):
    import torch

    from wsss_kit.data.image_io import read_mask
    from wsss_kit.data.synthetic import CLASS_NAMES

    run_dir, stages = refined_run
    rec = stages["train_refiner"]
    assert rec["complete"] and rec["steps"] == 3 and rec["images"] == 12 and not rec.get("skipped")
    assert (run_dir / "train_refiner" / "model.pt").is_file() and (run_dir / "train_refiner" / "log.csv").is_file()
    assert trainable_refiner.built_with[0] == list(CLASS_NAMES)  # the pipeline gives the C foreground names
    # The pseudo masks are the trained weights' predictions (not a fresh random refiner's).
    trained = trainable_refiner(num_classes=5, class_names=CLASS_NAMES)
    trained.load_state_dict(torch.load(run_dir / "train_refiner" / "model.pt", weights_only=True))
    sample = RunContext(tiny_config(TRAIN_REFINER), run_dir).dataset("train")[0]
    with torch.no_grad():
        expected = trained.refine(sample["image"][None], None, None).argmax(1)[0]
    got = read_mask(run_dir / "pseudo_masks" / "train" / f"{sample['name']}.png", 5)
    assert np.array_equal(got, expected.numpy())
    assert 0.0 <= stages["pseudo_masks"]["train"]["miou"] <= 1.0


def test_train_refiner_resumes_and_restarts(refined_run, capsys):
    run_dir, _ = refined_run
    before = json.loads((run_dir / "manifest.json").read_text())["stages"]["train_refiner"]["finished"]
    again = run_pipeline(tiny_config(TRAIN_REFINER), run_dir, stages=UP_TO_PSEUDO_MASKS)
    assert again["train_refiner"]["finished"] == before
    assert capsys.readouterr().out.count("complete, skipped") == len(UP_TO_PSEUDO_MASKS)
    longer = tiny_config(TRAIN_REFINER + ["refiner_train.steps=4"])
    with pytest.raises(ConfigError, match=r"stage train_refiner .* completed with other settings: refiner_train\.steps: 3 → 4"):
        run_pipeline(longer, run_dir, stages=UP_TO_PSEUDO_MASKS)
    stages = run_pipeline(longer, run_dir, stages=UP_TO_PSEUDO_MASKS, restart="train_refiner")
    assert stages["train_refiner"]["steps"] == 4 and stages["pseudo_masks"]["complete"]
    assert stages["seeds"]["complete"] and stages["seeds"]["finished"]  # upstream kept
    run_pipeline(tiny_config(TRAIN_REFINER), run_dir, stages=UP_TO_PSEUDO_MASKS, restart="train_refiner")


def test_train_refiner_reports_every_bad_seed_file(tmp_path, trainable_refiner):
    from wsss_kit.data.image_io import read_mask, save_mask_png
    from wsss_kit.errors import DataError

    cfg = tiny_config(TRAIN_REFINER)
    run_pipeline(cfg, tmp_path, stages=["train_cam", "cams", "seeds"])
    seeds = sorted((tmp_path / "seeds" / "train").glob("*.png"))
    save_mask_png(seeds[0], np.zeros((32, 32), dtype=np.int64))                 # wrong size
    seeds[1].unlink()                                                           # missing
    ds = RunContext(cfg, tmp_path).dataset("train")
    index = next(i for i in range(len(ds)) if float(ds[i]["labels"].sum()) < 5)
    absent = int((ds[index]["labels"] == 0).nonzero()[0]) + 1
    stray = tmp_path / "seeds" / "train" / f"{ds[index]['name']}.png"
    mask = read_mask(stray, 5).copy()
    mask[:4, :4] = absent                                                       # a class not in the labels
    save_mask_png(stray, mask)
    with pytest.raises(DataError) as info:
        run_pipeline(cfg, tmp_path, stages=["train_refiner"])
    msg = str(info.value)
    assert f"{seeds[0].name} is 32x32 but the image is 64x64" in msg
    assert f"{seeds[1]} is missing for image {seeds[1].stem!r}" in msg
    assert f"{stray} of image {ds[index]['name']!r} has class(es) [{absent}]" in msg
    assert not (tmp_path / "train_refiner" / "model.pt").exists()


def test_cli_train_refiner_verb(tmp_path, trainable_refiner, capsys):
    from wsss_kit.config import dump_config

    config = tmp_path / "run.yaml"
    config.write_text(dump_config(tiny_config(TRAIN_REFINER)))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--stages", "train_cam,cams,seeds"]) == 0
    assert main(["train-refiner", str(config), "--out", str(out)]) == 0
    assert (out / "train_refiner" / "model.pt").is_file()
    assert main(["pseudo-masks", str(config), "--out", str(out)]) == 0


def test_a_run_can_start_from_seed_masks_without_cams(refined_run, tmp_path, trainable_refiner):
    """seeds.source (e.g. the released MCTformer seeds) without a cam section: train_cam and cams are
    skipped, the seeds are checked and copied, and the refiner gets them instead of CAMs."""
    source, _ = refined_run
    cfg = tiny_config(TRAIN_REFINER)
    del cfg["cam"]
    cfg["seeds"] = {"source": {"train": str(source / "seeds" / "train"), "eval": str(source / "seeds" / "eval")}}
    stages = run_pipeline(cfg, tmp_path)
    assert stages["train_cam"]["skipped"] and stages["cams"]["skipped"]
    assert not (tmp_path / "cams").exists() and not (tmp_path / "train_cam").exists()
    assert stages["seeds"]["train"]["miou"] == pytest.approx(json.loads(
        (source / "manifest.json").read_text())["stages"]["seeds"]["train"]["miou"])
    assert stages["train_refiner"]["steps"] == 3 and stages["eval"]["complete"]
    report = (tmp_path / "results.md").read_text()
    assert "CAM (not computed)" in report and "seeds (seeds.source)" in report
    assert "pseudo masks (test_trainable, trained 3 steps)" in report


def test_without_cams_the_seeds_must_be_given(tmp_path):
    cfg = tiny_config()
    del cfg["cam"]
    with pytest.raises(ConfigError, match="no cam section.*seeds.source"):
        run_pipeline(cfg, tmp_path)


def test_dense_crf_refines_given_seed_masks_from_one_folder(refined_run, tmp_path):
    import shutil

    source, _ = refined_run
    folder = tmp_path / "released_seeds"
    for split in ("train", "eval"):
        shutil.copytree(source / "seeds" / split, folder, dirs_exist_ok=True)
    cfg = tiny_config()
    del cfg["cam"]
    cfg["seeds"] = {"source": str(folder)}
    with pytest.raises(ConfigError, match=r"'auto' \(seeds.bg_threshold, refiner.bg_threshold\) .* no CAMs"):
        run_pipeline(cfg, tmp_path / "auto", stages=["seeds", "pseudo_masks"])
    cfg = apply_overrides(cfg, ["refiner.bg_threshold=null"])
    stages = run_pipeline(cfg, tmp_path / "run", stages=["seeds", "pseudo_masks"])
    assert stages["train_cam"]["skipped"] and stages["train_refiner"]["skipped"]
    assert stages["seeds"]["bg_threshold"] is None and stages["pseudo_masks"]["complete"]
    with pytest.raises(ConfigError, match="pseudo_masks.input is cams, but this run computed no CAMs"):
        run_pipeline(apply_overrides(cfg, ["pseudo_masks.input=cams"]), tmp_path / "other")
