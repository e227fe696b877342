"""``python -m benchmarks reproduce TABLE --embedded``: every table's configs reduced to the embedded world
(checked without running), the weights mapping, the refusal of unknown specs, the water-labelled-boat
measure and the claims' verdicts. The world's shipped weights are stood in for by random files of the
same architectures (the test does not depend on the pretraining)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from benchmarks.reproduce import embedded as emb
from benchmarks.reproduce import reproduce
from benchmarks.reproduce.cli import main as cli_main
from benchmarks.reproduce.region_fraction import (
    measure_region_fraction,
    region_label_fraction,
)
from benchmarks.reproduce.resolve import resolve_table, validate_runs
from benchmarks.reproduce.results import Measured, claim_verdicts
from benchmarks.tables import TABLES, Claim, RegionFraction, Row, Run, Table
from wsss_kit.config import is_node
from wsss_kit.data.captions import SYNONYMS
from wsss_kit.data.image_io import save_mask_png
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.errors import ConfigError

WORLD_SPECS = {"released:wsss_world_resnet50", "released:wsss_world_vit", "released:wsss_synthetic_clip"}


@pytest.fixture(scope="module")
def world_weights(tmp_path_factory) -> Iterator[Path]:
    """Random-initialised files in place of the shipped world weights (same architectures and format)."""
    import timm
    import torch

    import wsss_kit.weights.released as released
    from wsss_kit.clip.loading import build_open_clip_model
    from wsss_kit.weights.packaged import save_packaged_state_dict

    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    save_packaged_state_dict(timm.create_model("wsss_world_resnet50", num_classes=5), folder / "wsss_world_resnet50.pt")
    save_packaged_state_dict(timm.create_model("wsss_world_vit", num_classes=5), folder / "wsss_world_vit.pt")
    save_packaged_state_dict(build_open_clip_model("wsss-synthetic-clip")[0], folder / "wsss_synthetic_clip.pt")
    mp = pytest.MonkeyPatch()
    mp.setattr(released, "PACKAGED_DIR", folder)
    for _name, _entry in list(released.RELEASED.items()):  # stand-in files: not the shipped SHA-256
        if _entry.packaged:
            mp.setitem(released.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
    yield folder
    mp.undo()


def _nodes(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _nodes(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _nodes(v, f"{path}.{k}" if path else k)
        if is_node(value):
            yield path, value


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_every_tables_embedded_runs_resolve_and_validate(table_id, tmp_path, world_weights):
    """Schema, weight files (world stand-ins), plugins planned on the meta device for the first runs."""
    runs = resolve_table(emb.embedded_table(TABLES[table_id]), tmp_path, embedded=True)
    validate_runs(runs)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing ran


def test_test_rows_are_scored_on_the_worlds_test_split_by_the_val_heads(tmp_path):
    table = TABLES["weakclip_table7"]
    world = emb.embedded_table(table)
    assert all(row.run is None and row.why_not for row in table.rows)  # the VOC table is unchanged
    assert {row.row: row.run for row in world.rows} == {"MCTformer": "deeplab_mct_test",
                                                        "WeakCLIP": "deeplab_weakclip_test"}
    assert all(row.result == "eval.eval.miou" and not row.why_not for row in world.rows)
    runs = {rr.run.name: rr for rr in resolve_table(world, tmp_path, embedded=True)}
    for head in ("deeplab_mct", "deeplab_weakclip"):
        trained, test = runs[head], runs[f"{head}_test"]
        assert trained.cfg["data"]["eval"]["split"] == "val"
        assert test.cfg["data"]["eval"]["split"] == "test"
        assert test.cfg["data"]["train"] == trained.cfg["data"]["train"]
        assert test.cfg["head"]["model"]["checkpoint"] == str(trained.run_dir / "train_head" / "model.pt")
        assert test.run.stages == trained.run.stages and test.run_dir != trained.run_dir


def test_every_unscorable_test_row_names_the_head_that_predicts_it():
    for table in TABLES.values():
        names = {run.name for run in table.runs}
        for row in table.rows:
            if row.split == "test" and row.run is None and "not public" in row.why_not:
                assert row.test_of in names, (table.id, row.row)
        world = emb.embedded_table(table)
        assert not [r.row for r in world.rows if r.split == "test" and r.run is None and "not public" in r.why_not]


def test_a_test_row_naming_no_run_of_its_table_is_refused():
    table = TABLES["weakclip_table7"]
    broken = Table(table.id, table.title, table.paper, table.runs[:1], table.rows, table.data)
    with pytest.raises(ConfigError, match=r"weakclip_table7, row 'MCTformer': test_of names run 'deeplab_mct', "
                                          r"which is not a run of the table \(runs: mct_psa\)"):
        emb.embedded_table(broken)


@pytest.mark.parametrize("table_id", sorted(TABLES))
def test_the_reduction_maps_every_backbone_clip_and_weights_key_to_the_world(table_id, tmp_path):
    runs = resolve_table(TABLES[table_id], tmp_path, embedded=True)
    run_dirs = {str(rr.run_dir) for rr in runs}
    for rr in runs:
        cfg = rr.cfg
        for key, node in cfg["data"].items():
            assert node == {"type": "datasets/synthetic", "split": {"train": "train", "eval": "val"}[key],
                            "num_images": {"train": emb.EMBEDDED_TRAIN_IMAGES, "eval": emb.EMBEDDED_EVAL_IMAGES}[key], "image_size": 128}
        for path, node in _nodes(cfg):
            kind = node["type"].rpartition(":")[2] if ":" in node["type"] else node["type"]
            where = f"{rr.run.name}: {path}"
            if kind in ("cams/resnet_cam", "cams/clims", "cams/pole", "refiners/irn_rw", "heads/deeplab_v2_r101"):
                assert node["backbone"] == "wsss_world_resnet50", where
                # from scratch, or CLIMS/POLE whose init_checkpoint (the world baseline) holds the backbone
                none = rr.run.name == "resnet_cam_scratch" or node.get("init_checkpoint") is not None
                assert node["weights"] == (None if none else "released:wsss_world_resnet50"), where
            if kind in ("cams/mctformer_v1", "cams/mctformer_v2"):
                assert (node["backbone"], node["weights"], node["img_size"]) == (
                    "wsss_world_vit", "released:wsss_world_vit", 128), where
            if kind in ("cams/clims", "cams/pole", "refiners/weakclip"):
                assert (node["clip_model"], node["clip_weights"]) == (
                    "wsss-synthetic-clip", "released:wsss_synthetic_clip"), where
            if kind == "cams/pole":
                assert node["synonyms"]["synonyms"] == SYNONYMS, where
            if kind == "heads/deeplab_v2_r101":
                assert node["style"] == "pytorch", where
            if kind == "refiners/psa_rw":  # no WR38 in the world: a narrow one from scratch
                assert node["weights"] is None and node["stem_width"] == emb.EMBEDDED_WR38["stem_width"], where
            assert kind != "heads/deeplab_v1_wr38", where
            for key, value in node.items():  # every weight spec: the world's, an earlier run's file, or null
                if key.endswith(("weights", "checkpoint")) and value is not None:
                    assert value in WORLD_SPECS or any(str(value).startswith(d) for d in run_dirs), (where, key, value)
        for section, key in (("cam", "cam"), ("head", "head")):
            if isinstance(cfg.get(section), dict) and "train" in cfg[section]:
                finetune = section == "cam" and cfg["cam"]["model"].get("init_checkpoint") is not None
                assert cfg[section]["train"]["steps"] == (emb.EMBEDDED_FINETUNE_STEPS if finetune
                                                          else emb.EMBEDDED_STEPS[key])
                assert cfg[section]["train"]["batch_size"] <= emb.EMBEDDED_BATCH[key]
                assert cfg[section]["augment"]["crop_size"] == emb.EMBEDDED_CROP
            infer = (cfg.get(section) or {}).get("infer") if isinstance(cfg.get(section), dict) else None
            if infer and "scales" in infer:
                assert infer["scales"] in ([1.0], emb.EMBEDDED_SCALES)
        if "refiner_train" in cfg:
            assert cfg["refiner_train"]["steps"] == emb.EMBEDDED_STEPS["refiner"]


def test_a_released_trained_network_becomes_the_world_run_that_trains_it(tmp_path):
    runs = resolve_table(TABLES["pole_table4"], tmp_path, embedded=True)
    names = [rr.run.name for rr in runs]
    assert names[0] == "world_res50_cam" and names.count("world_res50_cam") == 1
    model = str(runs[0].run_dir / "train_cam" / "model.pt")
    baseline = next(rr for rr in runs if rr.run.name == "irn_baseline")
    assert baseline.argv[baseline.argv.index("--checkpoint") + 1] == model
    for rr in runs:
        if rr.cfg.get("cam", {}).get("model", {}).get("type") in ("cams/clims", "cams/pole"):
            assert rr.cfg["cam"]["model"]["init_checkpoint"] == model, rr.run.name
    # the same world run (same folder) in another table: trained once for both
    other = resolve_table(TABLES["weakclip_table1"], tmp_path, embedded=True)
    assert other[0].run.name == "world_res50_cam" and other[0].run_dir == runs[0].run_dir


def _table_with(tmp_path: Path, node: dict[str, Any]) -> Table:
    config = tmp_path / "mine.yaml"
    import yaml

    config.write_text(yaml.safe_dump({
        "run_dir": "x", "data": {"train": {"type": "datasets/voc2012", "root": "VOCdevkit", "split": "train_aug"},
                                 "eval": {"type": "datasets/voc2012", "root": "VOCdevkit", "split": "train"}},
        "cam": {"model": node, "train": {"steps": 10, "batch_size": 2, "lr": 0.1}}}))
    return Table("mine", "mine", "mine", (Run("cams", str(config), ("train_cam",)),), ())


@pytest.mark.parametrize(("node", "key", "spec"), [
    ({"type": "cams/resnet_cam", "weights": "/data/my_resnet.pth"}, "weights", "/data/my_resnet.pth"),
    ({"type": "cams/mctformer_v2", "weights": "released:mctformer_v2_voc"}, "weights", "released:mctformer_v2_voc"),
    ({"type": "cams/clims", "clip_weights": "my_clip.pt"}, "clip_weights", "my_clip.pt"),
])
def test_an_unknown_weight_spec_is_refused_naming_node_and_key_before_any_run(tmp_path, node, key, spec):
    table = _table_with(tmp_path, node)
    with pytest.raises(ConfigError, match=rf"run 'cams'.*cam\.model \({node['type']}\): {key}: '{spec}' has no "
                                          rf"counterpart in the embedded world"):
        reproduce(table, tmp_path / "out", embedded=True, echo=lambda line: None)
    assert not (tmp_path / "out" / "runs").exists()


def test_a_node_type_the_reduction_does_not_know_keeps_no_weights_it_cannot_map():
    cfg = {"cam": {"model": {"type": "cams/my_dist:my_cam", "weights": "released:torchvision_resnet50_imagenet"}}}
    with pytest.raises(ConfigError, match=r"cam\.model \(cams/my_dist:my_cam\): weights: .*does not reduce node type "
                                          r"'cams/my_cam'"):
        emb.embedded_config(cfg)
    cfg["cam"]["model"]["weights"] = None  # random initialisation is always accepted
    assert emb.embedded_config(cfg)["cam"]["model"]["weights"] is None


def test_a_hub_tag_and_a_clip_default_map_like_their_released_names():
    cfg = {"cam": {"model": {"type": "cams/resnet_cam", "weights": "timm:resnet50.tv_in1k"}},
           "refiner": {"type": "refiners/weakclip", "clip_model": "ViT-B-16"}}  # clip_weights left at "default"
    out = emb.embedded_config(cfg)
    assert out["cam"]["model"]["weights"] == "released:wsss_world_resnet50"
    assert out["refiner"]["clip_weights"] == "released:wsss_synthetic_clip"
    assert cfg["refiner"] == {"type": "refiners/weakclip", "clip_model": "ViT-B-16"}  # the input is not changed


def test_a_wr38_head_becomes_a_deeplab_head_on_the_world_resnet():
    node = {"type": "heads/deeplab_v1_wr38", "weights": "released:resnet38_imagenet", "head_lr_mult": 10.0,
            "freeze_bn": True}
    out = emb.embedded_config({"head": {"model": node}})["head"]["model"]
    assert out == {"type": "heads/deeplab_v2_r101", "backbone": "wsss_world_resnet50",
                   "weights": "released:wsss_world_resnet50", "checkpoint": None, "style": "pytorch",
                   "atrous_rates": [12], "msc_scales": [], "train_output": "fused", "freeze_bn": True,
                   "aspp_lr_mult": 10.0, "aspp_bias_lr_mult": 20.0}


def test_smoke_and_embedded_exclude_each_other_and_claims_need_the_world(tmp_path, capsys):
    assert cli_main(["weakclip_table1", "--smoke", "--embedded", "--out", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="embedded_claims runs only on the embedded world"):
        reproduce("embedded_claims", tmp_path, data_root=tmp_path, echo=lambda line: None)
    assert cli_main(["--list"]) == 0
    assert "embedded_claims" in capsys.readouterr().out.split()


# ------------------------------------------------------------------ the water-labelled-boat measure
def test_region_label_fraction_on_hand_made_masks():
    boat = 4
    masks = [np.array([[0, 4], [4, 4]]), np.array([[4, 0], [0, 0]]), np.array([[1, 1], [255, 4]])]
    regions = [np.array([[1, 1], [0, 0]], bool), np.array([[1, 1], [1, 1]], bool), np.array([[0, 0], [1, 1]], bool)]
    # labelled boat inside the regions: 1 of 2, 1 of 4, 1 of 2 (255 is not boat) -> 3 / 8, pooled over pixels
    assert region_label_fraction(zip(masks, regions), boat) == pytest.approx(3 / 8)
    assert region_label_fraction([(masks[0], np.zeros((2, 2), bool))], boat) is None
    with pytest.raises(ValueError, match=r"item 0: mask is \(2, 2\) but its region is \(1, 2\)"):
        region_label_fraction([(masks[0], np.ones((1, 2), bool))], boat)


def test_water_labelled_boat_measured_from_a_runs_masks_and_the_scenes(tmp_path):
    ds = SyntheticDataset("val", num_images=24, image_size=64)
    boat = ds.class_names.index("boat") + 1
    cfg = {"data": {"eval": {"type": "datasets/synthetic", "split": "val", "num_images": 24, "image_size": 64}}}
    with_water = [i for i in range(len(ds)) if boat in ds.scene(i).classes and ds.scene(i).water.any()]
    assert len(with_water) >= 2
    first = with_water[0]
    for i in range(len(ds)):  # the ground truth everywhere (water is background), water as boat in one image
        scene = ds.scene(i)
        mask = scene.mask.copy()
        if i == first:
            mask[scene.water] = boat
        save_mask_png(tmp_path / "seeds" / "eval" / f"{ds.names[i]}.png", mask)
    expected = ds.scene(first).water.sum() / sum(ds.scene(i).water.sum() for i in with_water)
    spec = RegionFraction("water", "boat", "seeds/eval")
    assert measure_region_fraction(spec, cfg, tmp_path) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="class 'ship' is not one of the dataset's classes"):
        measure_region_fraction(RegionFraction("water", "ship"), cfg, tmp_path)
    (tmp_path / "seeds" / "eval" / f"{ds.names[first]}.png").unlink()
    with pytest.raises(Exception, match=rf"{ds.names[first]}.png does not exist"):
        measure_region_fraction(spec, cfg, tmp_path)


def test_claims_held_or_not_from_the_rows_values():
    def row(label: str) -> Row:
        return Row(label, "mIoU", None, "synthetic", "val", "r", "x")

    table = Table("t", "t", "t", (), (), claims=(Claim("a beats b", "a", "b"), Claim("b beats a", "b", "a"),
                                                  Claim("a beats c", "a", "c")))
    measured = [Measured(row("a"), 60.0), Measured(row("b"), 50.5), Measured(row("c"), None, "no run")]
    verdicts = [v for _, v in claim_verdicts(table, measured)]
    assert verdicts == ["held (a: 60, b: 50.5)", "did not hold (b: 50.5, a: 60)", "not measured"]
    assert measured[0].delta is None  # no paper number: no delta


def test_the_claims_table_rows_name_claims_and_every_claim_names_two_of_its_rows():
    table = TABLES["embedded_claims"]
    labels = {r.row for r in table.rows}
    assert table.embedded_only and len(table.claims) >= 6
    for claim in table.claims:
        assert claim.higher in labels and claim.lower in labels, claim
    water = [r for r in table.rows if isinstance(r.result, RegionFraction)]
    assert {r.run for r in water} == {"world_res50_cam", "clims"} and {r.metric for r in water} == {"fraction"}


def test_the_reduction_does_not_change_its_input():
    cfg = copy.deepcopy({"cam": {"model": {"type": "cams/pole", "weights": None, "synonyms": "voc"}}})
    before = copy.deepcopy(cfg)
    emb.embedded_config(cfg)
    assert cfg == before


@pytest.mark.slow
def test_embedded_claims_end_to_end_with_the_world_architectures(tmp_path, world_weights, monkeypatch):
    """The real reduction (world ResNet / DeiT / CLIP, narrow WR38, DeepLab heads on the world ResNet) run end
    to end at a few steps on a few images: every run trains and infers, every row gets a value, every claim a
    verdict. (~2-5 min on 2 cores; the world weights are random stand-ins, so the values mean nothing.)"""
    import json

    monkeypatch.setattr(emb, "EMBEDDED_STEPS", {"cam": 2, "refiner": 2, "head": 2})
    monkeypatch.setattr(emb, "EMBEDDED_FINETUNE_STEPS", 2)
    monkeypatch.setattr(emb, "EMBEDDED_TRAIN_IMAGES", 12)
    monkeypatch.setattr(emb, "EMBEDDED_EVAL_IMAGES", 8)
    measured = reproduce("embedded_claims", tmp_path, embedded=True, echo=lambda line: None)
    assert all(m.measured is not None and 0.0 <= m.measured <= 100.0 for m in measured), \
        [(m.row.row, m.reason) for m in measured if m.measured is None]
    folder = tmp_path / "embedded_claims"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["embedded"] is True and not manifest["smoke"]
    assert all(c["verdict"].startswith(("held", "did not hold")) for c in manifest["claims"])
    text = (folder / "results.md").read_text()
    assert text.startswith("**EMBEDDED WORLD") and "## Claims" in text
