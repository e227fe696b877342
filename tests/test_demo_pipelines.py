"""``wsss demo --pipeline NAME``: every pipeline's run file checks as ``wsss run --dry-run`` checks it,
a tiny version of each runs end to end, and the CLI's choices and errors.

The world's weights (``released:wsss_world_resnet50``, ``released:wsss_world_vit``,
``released:wsss_synthetic_clip``) are used where they are shipped; where a checkout does not have them
yet, random weights of the same architectures stand in (nothing here measures their quality).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from wsss_kit.cli.demo import (BASELINE_CONFIG, DEMO_PIPELINES, check_demo, demo_config_path, demo_configs,
                               get_pipeline)
from wsss_kit.cli.main import main
from wsss_kit.config import parse_config
from wsss_kit.errors import ConfigError

pytest.importorskip("wsss_cams")
pytest.importorskip("wsss_pole")
pytest.importorskip("wsss_weakclip")
pytest.importorskip("wsss_deeplab")

WORLD = ("wsss_world_resnet50", "wsss_world_vit", "wsss_synthetic_clip")

TINY_DATA = ["data.train.num_images=8", "data.train.image_size=64", "data.eval.num_images=4",
             "data.eval.image_size=64", "seed=0"]
TINY_CAM = ["cam.train.steps=2", "cam.train.batch_size=4", "cam.augment.crop_size=64", "cam.infer.scales=[1.0]",
            "cam.infer.flip=false"]
TINY_REST = ["refiner.workers=0", "head.train.steps=2", "head.train.batch_size=4", "head.augment.crop_size=64",
             "head.infer.flip=false", "eval.pictures=2"]
TINY_BASELINE = ["baseline.cam.train.steps=2", "baseline.cam.train.batch_size=4", "baseline.cam.augment.crop_size=64",
                 "baseline.cam.infer.flip=false"]
TINY: dict[str, list[str]] = {
    "resnet_cam": TINY_DATA + TINY_CAM + TINY_REST,
    "clims": TINY_DATA + TINY_CAM + TINY_REST + TINY_BASELINE,
    "pole": TINY_DATA + TINY_CAM + TINY_REST + TINY_BASELINE,
    "mctformer": TINY_DATA + TINY_CAM + TINY_REST,
    "weakclip": TINY_DATA + TINY_CAM + [
        "refiner_train.steps=2", "refiner_train.batch_size=2", "refiner_train.warmup_steps=1",
        "refiner_augment.crop_size=64", "refiner.scales=[1.0]", "refiner.flip=false", "refiner.crf=null",
        "pseudo_masks.batch_size=4"] + [o for o in TINY_REST if not o.startswith("refiner.")],
}


@pytest.fixture
def world_weights(tmp_path, monkeypatch):
    """The world's ``released:`` files: the shipped ones, or random stand-ins in a temporary folder."""
    import timm

    from wsss_kit.clip import load_clip
    from wsss_kit.weights import released

    if all(released.released_path(released.RELEASED[n]).is_file() for n in WORLD):
        return released.packaged_dir()
    folder = tmp_path / "pretrained"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(timm.create_model("wsss_world_resnet50", num_classes=7).state_dict(), folder / "wsss_world_resnet50.pt")
    torch.save(timm.create_model("wsss_world_vit", num_classes=7).state_dict(), folder / "wsss_world_vit.pt")
    torch.save(load_clip("wsss-synthetic-clip", None).model.state_dict(), folder / "wsss_synthetic_clip.pt")
    monkeypatch.setattr(released, "PACKAGED_DIR", folder)
    for _name, _entry in list(released.RELEASED.items()):  # stand-in files: not the shipped SHA-256
        if _entry.packaged:
            monkeypatch.setitem(released.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
    for name in WORLD:  # a checksum recorded for the real files would refuse the stand-ins
        monkeypatch.setitem(released.RELEASED, name, dataclasses.replace(released.RELEASED[name], sha256=None))
    return folder


# ------------------------------------------------------------------ the run files
def test_every_pipeline_has_a_shipped_run_file():
    assert tuple(DEMO_PIPELINES) == ("resnet_cam", "clims", "pole", "mctformer", "weakclip")
    assert demo_config_path().name == "demo.yaml"
    for name, record in DEMO_PIPELINES.items():
        path = demo_config_path(name)
        assert path.is_file() and path.name == ("demo.yaml" if name == "resnet_cam" else f"demo_{name}.yaml")
        cfg = parse_config(path.read_text(encoding="utf-8"), source=path.name)
        assert cfg["data"]["train"]["type"] == "datasets/synthetic"
    assert demo_config_path(BASELINE_CONFIG).is_file()


@pytest.mark.parametrize("name, cam_type", [("resnet_cam", "cams/resnet_cam"), ("clims", "cams/clims"),
                                            ("pole", "cams/pole"), ("mctformer", "cams/mctformer_v2"),
                                            ("weakclip", "cams/resnet_cam")])
def test_each_pipeline_checks_as_wsss_run_dry_run_checks_it(name, cam_type, world_weights, tmp_path):
    configs = demo_configs(name, out=str(tmp_path / name))
    assert configs.cfg["cam"]["model"]["type"] == cam_type
    check_demo(configs)  # raises ConfigError listing every problem
    assert not (tmp_path / name).exists()  # nothing written


def test_the_pipelines_use_the_world_foundations():
    def node(name, key):
        cfg = demo_configs(name).cfg
        for part in key.split("."):
            cfg = cfg[part]
        return cfg

    for name in ("clims", "pole"):
        assert node(name, "cam.model.clip_weights") == "released:wsss_synthetic_clip"
        assert node(name, "cam.model.weights") == "released:wsss_world_resnet50"
    assert node("mctformer", "cam.model.weights") == "released:wsss_world_vit"
    assert node("weakclip", "refiner.type") == "refiners/weakclip"
    assert node("weakclip", "refiner.clip_weights") == "released:wsss_synthetic_clip"
    for name in ("clims", "pole", "mctformer", "weakclip"):
        assert node(name, "head.model.encoder_weights") == "released:wsss_world_resnet50"


def test_pole_selects_among_the_worlds_subtype_words():
    from wsss_kit.data.captions import SYNONYMS

    table = demo_configs("pole").cfg["cam"]["model"]["synonyms"]["synonyms"]
    assert {k: list(v) for k, v in table.items()} == {k: list(v) for k, v in SYNONYMS.items()}


def test_the_baseline_runs_in_the_run_directory_with_the_pipelines_data(tmp_path):
    out = tmp_path / "demo"
    configs = demo_configs("pole", ["data.train.num_images=10", "seed=3", "baseline.cam.train.steps=7"], str(out))
    assert configs.baseline_dir == out / "baseline"
    assert configs.baseline_cfg["data"]["train"]["num_images"] == 10 and configs.baseline_cfg["seed"] == 3
    assert configs.baseline_cfg["cam"]["train"]["steps"] == 7
    assert configs.cfg["cam"]["train"]["steps"] == 150  # the pipeline's own value is untouched
    model = configs.cfg["cam"]["model"]
    assert model["init_checkpoint"] == str(out / "baseline" / "train_cam" / "model.pt")
    assert model["selection_cache"] == str(out / "baseline" / "pole_selection.json")
    clims = demo_configs("clims", out=str(out)).cfg["cam"]["model"]
    assert clims["init_checkpoint"] == str(out / "baseline" / "train_cam" / "model.pt")
    assert "selection_cache" not in clims
    assert demo_configs("resnet_cam").baseline_cfg is None


@pytest.mark.parametrize("name, overrides, match", [
    ("nope", [], r"unknown demo pipeline 'nope'; choose one of resnet_cam, clims, pole, mctformer, weakclip"),
    ("mctformer", ["baseline.cam.train.steps=3"], r"'mctformer' demo has no baseline run \(only clims, pole"),
    ("clims", ["cam.model.init_checkpoint=x.pt"], r"cam.model.init_checkpoint: the 'clims' demo sets it"),
    ("pole", ["cam.model.selection_cache=s.json"], r"cam.model.selection_cache: the 'pole' demo sets it"),
    ("pole", ["baseline.data.train.num_images=3"], r"baseline takes data, seed, device from the pipeline"),
])
def test_bad_demo_arguments_are_refused_by_name(name, overrides, match):
    with pytest.raises(ConfigError, match=match):
        demo_configs(name, overrides)


def test_unknown_pipeline_on_the_command_line_lists_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--pipeline", "mctformr"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'mctformr'" in err
    for name in DEMO_PIPELINES:
        assert repr(name) in err
    assert get_pipeline("pole").select_command == "wsss-pole-select"


def test_print_config_shows_the_pipeline_and_its_baseline(capsys):
    assert main(["demo", "--pipeline", "pole", "--print-config", "--set", "cam.train.steps=11",
                 "--set", "baseline.cam.train.steps=5"]) == 0
    text = capsys.readouterr().out
    pipeline, baseline = text.split("# the baseline run")
    assert "type: cams/pole" in pipeline and "steps: 11" in pipeline
    assert "cams/resnet_cam" in baseline and "steps: 5" in baseline


def test_dry_run_plans_both_runs_and_writes_nothing(world_weights, tmp_path, capsys):
    out = tmp_path / "clims"
    assert main(["demo", "--pipeline", "clims", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "# baseline run (demo_baseline.yaml)" in text and "# the clims run (demo_clims.yaml)" in text
    assert text.count("# plan") == 2
    assert not out.exists()


# ------------------------------------------------------------------ tiny runs, end to end
def _run_tiny(name, out, capsys):
    assert main(["demo", "--pipeline", name, "--out", str(out)] + [a for o in TINY[name] for a in ("--set", o)]) == 0
    text = capsys.readouterr().out
    assert "retrained head" in text and "held-out mIoU" in text
    assert (out / "results.md").read_text().startswith("# Results")
    assert (out / "pictures" / "eval_grid.png").is_file()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(rec.get("complete") for rec in stages.values())
    return text, stages


# resnet_cam's tiny run is tests/test_pipeline.py's CLI test too: here only with -m slow
@pytest.mark.parametrize("name", [pytest.param("resnet_cam", marks=pytest.mark.slow), "mctformer"])
def test_a_tiny_single_run_pipeline_runs_end_to_end(name, world_weights, tmp_path, capsys):
    text, stages = _run_tiny(name, tmp_path / name, capsys)
    assert stages["train_cam"]["steps"] == 2


@pytest.mark.slow
def test_tiny_weakclip_pipeline_trains_the_refiner(world_weights, tmp_path, capsys):
    text, stages = _run_tiny("weakclip", tmp_path / "weakclip", capsys)
    assert stages["train_refiner"]["steps"] == 2 and not stages["train_refiner"].get("skipped")
    assert "pseudo masks (weakclip, trained 2 steps)" in text


@pytest.mark.slow
def test_tiny_clims_pipeline_starts_from_its_baseline(world_weights, tmp_path, capsys):
    out = tmp_path / "clims"
    text, stages = _run_tiny("clims", out, capsys)
    baseline = json.loads((out / "baseline" / "manifest.json").read_text())["stages"]
    assert baseline["train_cam"]["complete"] and baseline["cams"]["complete"]
    assert "baseline CAM network" in text
    resolved = parse_config((out / "config.resolved.yaml").read_text(), source="resolved")
    assert resolved["cam"]["model"]["init_checkpoint"] == str(out / "baseline" / "train_cam" / "model.pt")


@pytest.mark.slow
def test_tiny_pole_pipeline_selects_then_trains_and_resumes(world_weights, tmp_path, capsys):
    from wsss_kit.data.captions import SYNONYMS

    out = tmp_path / "pole"
    _run_tiny("pole", out, capsys)
    cache = json.loads((out / "baseline" / "pole_selection.json").read_text())
    assert cache["complete"] and len(cache["selections"]) == 8
    for chosen in cache["selections"].values():
        for cls, word in chosen.items():
            assert word == cls or word in SYNONYMS[cls]
    # a second call resumes every run: nothing is trained again
    assert main(["demo", "--pipeline", "pole", "--out", str(out)] + [a for o in TINY["pole"] for a in ("--set", o)]) == 0
    text = capsys.readouterr().out
    assert text.count("train_cam: complete, skipped") == 2
