"""Brought-in pseudo masks (``pseudo_masks.source``) and refiners trained on targets they make from
the CAMs (``training_targets``, ``refiner_targets``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_pipeline import tiny_config
from torch import nn

import wsss_kit
from wsss_kit.data.image_io import read_mask, read_mask_raw, save_mask_png
from wsss_kit.errors import ConfigError, DataError
from wsss_kit.pipeline import run_pipeline
from wsss_kit.pipeline.context import RunContext
from wsss_kit.registry import default_registry


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full")
    return run_dir, run_pipeline(tiny_config(), run_dir)


def head_only_config(source):
    cfg = tiny_config()
    for key in ("cam", "seeds", "refiner"):
        cfg.pop(key, None)
    cfg["pseudo_masks"] = {"source": source}
    return cfg


# --------------------------------------------------------------------------- pseudo_masks.source
def test_a_head_trains_on_brought_in_pseudo_masks(finished, tmp_path):
    source, done = finished
    folder = tmp_path / "masks"
    for split in ("train", "eval"):
        shutil.copytree(source / "pseudo_masks" / split, folder, dirs_exist_ok=True)
    run_dir = tmp_path / "run"
    stages = run_pipeline(head_only_config(str(folder)), run_dir)
    for stage in ("train_cam", "cams", "seeds", "train_refiner"):
        assert stages[stage]["complete"] and stages[stage]["skipped"], stage
    assert stages["pseudo_masks"]["train"]["miou"] == pytest.approx(done["pseudo_masks"]["train"]["miou"])
    assert stages["pseudo_masks"]["eval"]["miou"] == pytest.approx(done["pseudo_masks"]["eval"]["miou"])
    # The same masks, the same head config and seed: the same head as the full run.
    assert stages["eval"]["eval"]["miou"] == pytest.approx(done["eval"]["eval"]["miou"])
    assert "pseudo masks (pseudo_masks.source)" in (run_dir / "results.md").read_text()
    assert (run_dir / "pictures" / "eval_grid.png").is_file()


def test_pseudo_masks_source_may_give_the_train_split_only(finished, tmp_path):
    source, _ = finished
    stages = run_pipeline(head_only_config({"train": str(source / "pseudo_masks" / "train")}), tmp_path)
    assert stages["pseudo_masks"]["complete"] and "eval" not in stages["pseudo_masks"]
    assert stages["eval"]["eval"]["miou"] is not None
    with pytest.raises(ConfigError, match="pseudo_masks.source must give the train split"):
        run_pipeline(head_only_config({"eval": str(source / "pseudo_masks" / "eval")}), tmp_path / "other")


def test_bad_brought_in_pseudo_masks_are_all_named_and_nothing_is_copied(finished, tmp_path):
    source, _ = finished
    folder = tmp_path / "masks"
    shutil.copytree(source / "pseudo_masks" / "train", folder)
    files = sorted(folder.glob("*.png"))
    save_mask_png(files[0], np.zeros((32, 40), dtype=np.int64))
    files[1].unlink()
    run_dir = tmp_path / "run"
    with pytest.raises(DataError) as info:
        run_pipeline(head_only_config({"train": str(folder)}), run_dir)
    msg = str(info.value)
    assert f"pseudo_masks.source {folder}" in msg
    assert f"{files[0].name} is 32x40 but the image is 64x64" in msg
    assert f"{files[1]} is missing for image {files[1].stem!r}" in msg
    assert not list((run_dir / "pseudo_masks").rglob("*.png"))


def _with_stray_class(folder, ds_labels):
    """Give the first mask of ``folder`` a block of a class its image's labels lack; return (file, class)."""
    path = sorted(folder.glob("*.png"))[0]
    mask = read_mask_raw(path).astype(np.int64)
    labels = ds_labels[path.stem]
    absent = next(c + 1 for c in range(labels.numel()) if labels[c] < 0.5)
    mask[:4, :4] = absent
    save_mask_png(path, mask)
    return path, absent


@pytest.mark.parametrize("policy", ["error", "keep", "ignore"])
def test_pseudo_masks_outside_the_labels_follow_outside_labels(finished, tmp_path, policy):
    source, _ = finished
    folder = tmp_path / "masks"
    shutil.copytree(source / "pseudo_masks" / "train", folder)
    ds = RunContext(tiny_config(), tmp_path / "ctx").dataset("train")
    path, absent = _with_stray_class(folder, {s["name"]: s["labels"] for s in ds})
    cfg = head_only_config({"train": str(folder)})
    if policy != "error":
        cfg["pseudo_masks"]["outside_labels"] = policy
    run_dir = tmp_path / "run"
    if policy == "error":
        with pytest.raises(DataError, match=rf"class\(es\) \[{absent}\] that the image's labels do not have"):
            run_pipeline(cfg, run_dir, stages=["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"])
        return
    run_pipeline(cfg, run_dir, stages=["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"])
    copied = read_mask_raw(run_dir / "pseudo_masks" / "train" / path.name)
    assert copied[0, 0] == (absent if policy == "keep" else 255)
    assert (copied[4:, 4:] == read_mask_raw(path)[4:, 4:]).all()


def test_outside_labels_is_checked_by_the_schema(tmp_path):
    cfg = head_only_config({"train": str(tmp_path)})
    cfg["pseudo_masks"]["outside_labels"] = "drop"
    with pytest.raises(ConfigError, match="pseudo_masks.outside_labels"):
        run_pipeline(cfg, tmp_path / "run")


# --------------------------------------------------------------------------- refiner targets from CAMs
CONFIDENT = 0.6


class TargetMaker(wsss_kit.Refiner, nn.Module):
    """Trains a 1x1 conv on its own targets: the CAM's class where it exceeds a threshold, 255 elsewhere."""

    trainable = True
    seen_targets: list = []

    def __init__(self, num_classes: int, threshold: float = CONFIDENT, broken: bool = False):
        nn.Module.__init__(self)
        self.conv = nn.Conv2d(3, num_classes + 1, 1)
        self.threshold, self.broken = threshold, broken

    def training_targets(self, image, cams, labels):
        if self.broken:
            return torch.zeros(3, 3, dtype=torch.long)
        best, cls = cams.max(0)
        out = cls + 1
        out[best < self.threshold] = 255
        return out

    def training_step(self, batch):
        TargetMaker.seen_targets.append(batch["target"].clone())
        return {"loss": F.cross_entropy(self.conv(batch["image"]), batch["target"], ignore_index=255)}

    def refine(self, images, cams, labels):
        return self.conv(images).softmax(1)


MAKER = ["refiner={type: refiners/test_target_maker}",
         "refiner_train={steps: 2, batch_size: 4, lr: 0.1, optimizer: sgd}"]
UPTO = ["train_cam", "cams", "seeds", "train_refiner"]


@pytest.fixture()
def target_maker():
    wsss_kit.register("refiners", "test_target_maker", TargetMaker)
    TargetMaker.seen_targets.clear()
    yield TargetMaker
    default_registry().unregister("refiners", "test_target_maker")


def _expected_target(run_dir, cfg, name):
    from wsss_kit.data.artifacts import load_cams

    cams = load_cams(run_dir / "cams" / "train" / f"{name}.npz", 5)
    best, cls = cams.max(0)
    out = (cls + 1).numpy()
    out[best.numpy() < CONFIDENT] = 255
    return out


@pytest.mark.parametrize("targets", [[], ["refiner_targets={kind: cams, workers: 2}"]])
def test_a_refiner_trains_on_the_targets_it_makes_from_the_cams(tmp_path, target_maker, targets):
    cfg = tiny_config(MAKER + targets)
    stages = run_pipeline(cfg, tmp_path, stages=UPTO)
    rec = stages["train_refiner"]
    assert rec["targets"] == "cams" and rec["steps"] == 2 and 0 <= rec["targets_miou"]["miou"] <= 1
    ds = RunContext(cfg, tmp_path).dataset("train")
    for i in range(len(ds)):
        name = ds[i]["name"]
        got = read_mask(tmp_path / "train_refiner" / "targets" / f"{name}.png", 5)
        assert np.array_equal(got, _expected_target(tmp_path, cfg, name)), name
    # The batches held those targets (unaugmented here), not the seeds.
    seen = torch.cat(target_maker.seen_targets)
    assert (seen == 255).any() and set(seen.unique().tolist()) <= {0, 1, 2, 3, 4, 5, 255}
    assert not (seen == 0).any()  # this maker never labels background; the seeds would


def test_refiner_targets_seeds_and_errors(tmp_path, target_maker):
    cfg = tiny_config(MAKER + ["refiner_targets=seeds"])
    stages = run_pipeline(cfg, tmp_path, stages=UPTO)
    assert stages["train_refiner"]["targets"] == "seeds"
    assert not (tmp_path / "train_refiner" / "targets").exists()
    assert (target_maker.seen_targets[0] == 0).any()  # seeds label background
    with pytest.raises(ConfigError, match="refiner_targets must be one of auto, seeds, cams or a mapping with keys kind, workers; got 'masks'"):
        run_pipeline(tiny_config(MAKER + ["refiner_targets=masks"]), tmp_path / "bad", stages=UPTO)
    with pytest.raises(ConfigError, match="refiner_targets.workers must be an integer >= 0; got -1"):
        run_pipeline(tiny_config(MAKER + ["refiner_targets={kind: cams, workers: -1}"]), tmp_path / "bad2",
                     stages=UPTO)

    class NoTargets(TargetMaker):
        training_targets = None

    wsss_kit.register("refiners", "test_no_targets", NoTargets)
    try:
        cfg = tiny_config(MAKER + ["refiner.type=refiners/test_no_targets", "refiner_targets=cams"])
        with pytest.raises(ConfigError, match="refiners/test_no_targets makes no targets from CAMs"):
            run_pipeline(cfg, tmp_path / "none", stages=UPTO)
    finally:
        default_registry().unregister("refiners", "test_no_targets")
    # Without CAMs (seeds brought in) there is nothing to make them from.
    cfg = tiny_config(MAKER + ["refiner_targets=cams"])
    del cfg["cam"]
    cfg["seeds"] = {"source": str(tmp_path / "seeds" / "train")}
    cfg["seeds"]["source"] = {"train": str(tmp_path / "seeds" / "train"), "eval": str(tmp_path / "seeds" / "eval")}
    with pytest.raises(ConfigError, match="this run computed no CAMs"):
        run_pipeline(cfg, tmp_path / "nocams", stages=UPTO)


def test_targets_resume_and_are_remade_under_other_settings(tmp_path, target_maker):
    cfg = tiny_config(MAKER)
    run_pipeline(cfg, tmp_path, stages=UPTO)
    folder = tmp_path / "train_refiner" / "targets"
    first = sorted(folder.glob("*.png"))[0]
    first.unlink()
    stamp = (folder / "fingerprint.txt").read_text()
    run_pipeline(cfg, tmp_path, stages=UPTO, restart="train_refiner")  # the folder is deleted on restart
    assert first.exists()
    other = tiny_config(MAKER + ["refiner.threshold=0.9"])
    run_pipeline(other, tmp_path, stages=UPTO, restart="train_refiner")
    assert (folder / "fingerprint.txt").read_text() != stamp
    name = first.stem
    got = read_mask(first, 5)
    assert (got == 255).sum() >= (_expected_target(tmp_path, cfg, name) == 255).sum()


def test_bad_targets_name_the_image(tmp_path, target_maker):
    with pytest.raises(DataError, match=r"test_target_maker.training_targets for image '.*' must return an "
                                        r"integer tensor of the image size \(64, 64\), got torch.int64 \(3, 3\)"):
        run_pipeline(tiny_config(MAKER + ["refiner.broken=true", "refiner_targets={kind: cams, workers: 0}"]),
                     tmp_path, stages=UPTO)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert not manifest["stages"]["train_refiner"].get("complete")
    assert not (tmp_path / "train_refiner" / "model.pt").exists()
