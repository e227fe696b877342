"""FolderDataset: label files (CSV/JSON), masks, and the errors for malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import wsss_kit
from wsss_kit.data import FolderDataset, read_label_file, save_mask_png
from wsss_kit.errors import DataError

CLASSES = ["cat", "dog", "traffic light"]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name, ext in (("one", "jpg"), ("two", "png"), ("three", "jpeg")):
        Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(root / "images" / f"{name}.{ext}")
        m = np.zeros((8, 10), dtype=np.uint8)
        m[2:5, 2:5] = {"one": 1, "two": 2, "three": 3}[name]
        save_mask_png(root / "masks" / f"{name}.png", m)
    (root / "labels.csv").write_text("name,labels\none.jpg,cat\ntwo,dog cat\nthree,traffic light\n")
    return root


def test_csv_labels_and_masks(folder):
    ds = FolderDataset(str(folder), CLASSES, mask_dir="masks")
    assert ds.names == ["one", "two", "three"] and ds.num_classes == 3 and len(ds.palette) == 4
    s = ds[1]
    assert s["image"].shape == (3, 8, 10) and s["name"] == "two"
    assert torch.nonzero(s["labels"]).flatten().tolist() == [0, 1]
    assert s["mask"].max() == 2
    assert torch.nonzero(ds[2]["labels"]).flatten().tolist() == [2]  # a class name with a space


def test_without_masks_and_with_indices(folder):
    (folder / "idx.csv").write_text("one,0\ntwo,1;2\nthree,2\n")
    ds = FolderDataset(str(folder), CLASSES, labels="idx.csv")
    assert torch.nonzero(ds[1]["labels"]).flatten().tolist() == [1, 2]
    assert (ds[0]["mask"] == 255).all()


def test_json_labels_and_class_file(folder):
    (folder / "labels.json").write_text(json.dumps({"three": ["cat"], "one": [1, "traffic light"]}))
    (folder / "classes.txt").write_text("cat\ndog\ntraffic light\n")
    ds = FolderDataset(str(folder), "classes.txt", labels="labels.json", max_images=1)
    assert ds.names == ["three"] and ds.class_names == tuple(CLASSES)
    (folder / "list.json").write_text(json.dumps([{"name": "two", "labels": "cat;dog"}]))
    assert read_label_file(folder / "list.json", CLASSES) == {"two": [0, 1]}


def test_labels_from_masks(folder):
    ds = FolderDataset(str(folder), CLASSES, labels=None, mask_dir="masks")
    assert ds.names == ["one", "three", "two"]  # sorted image list
    assert torch.nonzero(ds[1]["labels"]).flatten().tolist() == [2]
    with pytest.raises(DataError, match="mask_dir is required"):
        FolderDataset(str(folder), CLASSES, labels=None)


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("one,cat\ntwo,cta\n", r"labels\.csv, line 2 \(image 'two'\): unknown class 'cta' \(did you mean 'cat'\?\); "
                              r"valid class names: cat, dog, traffic light \(or 0-based indices 0\.\.2\)"),
        ("one,cat\n\ntwo,7\n", r"line 3 \(image 'two'\): class index 7 is out of range 0\.\.2"),
        ("one,cat,dog\n", r"line 1: expected 'image_id,class;class' \(2 columns\), got 3"),
        ("one,cat\none,dog\n", r"line 2: image 'one' is listed more than once"),
    ],
)
def test_malformed_csv_names_the_line(folder, content, pattern):
    (folder / "labels.csv").write_text(content)
    with pytest.raises(DataError, match=pattern):
        FolderDataset(str(folder), CLASSES)


def test_malformed_json_names_the_entry(folder):
    (folder / "labels.json").write_text(json.dumps({"one": ["cat"], "two": [{"x": 1}]}))
    with pytest.raises(DataError, match=r"entry 'two'.*neither a class name nor an index.*valid class names: cat"):
        FolderDataset(str(folder), CLASSES, labels="labels.json")
    (folder / "labels.json").write_text(json.dumps({"one": 3.5}))
    with pytest.raises(DataError, match=r"entry 'one': expected a list"):
        FolderDataset(str(folder), CLASSES, labels="labels.json")


def test_layout_errors(folder):
    (folder / "labels.csv").write_text("one,cat\nfour,dog\n")
    with pytest.raises(DataError, match=r"lists 1 image\(s\) with no file in .*images: four"):
        FolderDataset(str(folder), CLASSES)
    with pytest.raises(DataError, match="image folder .*pictures does not exist"):
        FolderDataset(str(folder), CLASSES, image_dir="pictures")
    with pytest.raises(DataError, match="mask folder .*gt does not exist"):
        FolderDataset(str(folder), CLASSES, mask_dir="gt")
    with pytest.raises(DataError, match="label file .*nope.csv does not exist"):
        FolderDataset(str(folder), CLASSES, labels="nope.csv")
    with pytest.raises(DataError, match="duplicate class names"):
        FolderDataset(str(folder), ["cat", "cat"])
    with pytest.raises(DataError, match="background is implicit"):
        FolderDataset(str(folder), ["background", "cat"])
    with pytest.raises(DataError, match=r"read as a file of class names.*does not exist"):
        FolderDataset(str(folder), "cat")


def test_empty_label_row(folder):
    (folder / "labels.csv").write_text("one,\ntwo,dog\n")
    ds = FolderDataset(str(folder), CLASSES)
    with pytest.raises(DataError, match=r"image one .*one\.jpg\).*empty label set.*labels\.csv"):
        ds[0]
    assert float(FolderDataset(str(folder), CLASSES, allow_empty_labels=True)[0]["labels"].sum()) == 0


def test_registry_builds_from_yaml_like_kwargs(folder):
    ds = wsss_kit.create("datasets", "folder", root=str(folder), class_names=CLASSES, mask_dir="masks")
    assert isinstance(ds, FolderDataset) and len(ds) == 3
