"""VOC2012Dataset on a small VOC-layout fixture, including broken files and check_dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import wsss_kit
from wsss_kit.data import DataProblem, VOC2012Dataset, check_dataset, format_problems, save_mask_png, voc_colormap
from wsss_kit.errors import DataError

H, W = 12, 16


def make_voc(root, ids=("a", "b", "c")):
    """VOCdevkit/VOC2012 with 3 images: a {aeroplane, person}, b {dog}, c {car} (c only in Aug)."""
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation", "ImageSets/SegmentationAug"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    masks = {}
    m = np.zeros((H, W), dtype=np.uint8)
    m[2:6, 2:6], m[6:10, 8:14], m[0, :] = 1, 15, 255
    masks["a"] = m
    m = np.zeros((H, W), dtype=np.uint8)
    m[3:9, 3:12] = 12
    masks["b"] = m
    m = np.zeros((H, W), dtype=np.uint8)
    m[1:5, 1:9] = 7
    masks["c"] = m
    for name in ids:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
        save_mask_png(voc / "SegmentationClassAug" / f"{name}.png", masks[name], voc_colormap())
        if name != "c":
            plain = masks[name].copy()
            if name == "a":
                plain[10:, :4] = 3  # differs from the Aug mask: tells which folder was read
            save_mask_png(voc / "SegmentationClass" / f"{name}.png", plain, voc_colormap())
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("a\n")
    (voc / "ImageSets/Segmentation/test.txt").write_text("c\n")
    # SBD-style list lines with paths
    (voc / "ImageSets/SegmentationAug/train_aug.txt").write_text(
        "".join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in ids)
    )
    return voc


@pytest.fixture
def voc(tmp_path):
    return make_voc(tmp_path)


def test_train_aug_samples(voc):
    ds = VOC2012Dataset(str(voc.parent.parent))
    assert len(ds) == 3 and ds.names == ["a", "b", "c"]
    assert ds.num_classes == 20 and len(ds.palette) == 21 and ds.palette[15] == (192, 128, 128)
    s = ds[0]
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["mask"].shape == (H, W) and s["mask"].dtype == torch.int64
    assert s["labels"].dtype == torch.float32 and s["labels"].shape == (20,)
    assert torch.nonzero(s["labels"]).flatten().tolist() == [0, 14]  # aeroplane, person
    assert s["name"] == "a"
    assert (s["mask"][0] == 255).all() and (s["mask"][10:, :4] == 0).all()  # the Aug mask
    assert torch.nonzero(ds[2]["labels"]).flatten().tolist() == [6]


def test_root_detection(voc, tmp_path):
    assert VOC2012Dataset(str(voc)).root == voc
    assert VOC2012Dataset(str(tmp_path / "VOCdevkit")).root == voc
    with pytest.raises(DataError, match=r"(?s)no PASCAL VOC 2012 data found.*JPEGImages/<id>\.jpg"):
        VOC2012Dataset(str(tmp_path / "elsewhere"))


def test_train_uses_segmentation_class_and_falls_back(voc):
    ds = VOC2012Dataset(str(voc), split="train")
    assert ds.names == ["a", "b"]
    assert (ds[0]["mask"][10:, :4] == 3).all()  # SegmentationClass version
    assert torch.nonzero(ds[0]["labels"]).flatten().tolist() == [0, 2, 14]
    (voc / "SegmentationClass" / "b.png").unlink()
    assert ds[1]["mask"].max() == 12  # from SegmentationClassAug


def test_test_split_has_no_masks(voc):
    ds = VOC2012Dataset(str(voc), split="test")
    s = ds[0]
    assert (s["mask"] == 255).all() and s["mask"].shape == (H, W)
    assert float(s["labels"].sum()) == 0  # unknown without a label file


def test_unknown_split_lists_available(voc):
    with pytest.raises(DataError, match=r"trainval\.txt.*does not exist.*found.*test, train, train_aug, val"):
        VOC2012Dataset(str(voc), split="trainval")


def test_custom_split_file_and_max_images(voc, tmp_path):
    (tmp_path / "mine.txt").write_text("b\n\nc\n")
    ds = VOC2012Dataset(str(voc), split_file=str(tmp_path / "mine.txt"))
    assert ds.names == ["b", "c"]
    assert len(VOC2012Dataset(str(voc), max_images=2)) == 2
    with pytest.raises(ValueError, match="max_images"):
        VOC2012Dataset(str(voc), max_images=0)


def test_label_file_json_and_csv(voc, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"a": ["cat"], "b": [3, "person"], "c": "bus;car"}))
    ds = VOC2012Dataset(str(voc), label_file=str(tmp_path / "labels.json"))
    assert torch.nonzero(ds[0]["labels"]).flatten().tolist() == [7]
    assert torch.nonzero(ds[1]["labels"]).flatten().tolist() == [3, 14]
    assert torch.nonzero(ds[2]["labels"]).flatten().tolist() == [5, 6]
    (tmp_path / "labels.csv").write_text("image_id,labels\na,cat\nb,boat person\nc,bus;car\n")
    ds = VOC2012Dataset(str(voc), labels_from="file", label_file=str(tmp_path / "labels.csv"))
    assert torch.nonzero(ds[1]["labels"]).flatten().tolist() == [3, 14]
    test = VOC2012Dataset(str(voc), split="test", label_file=str(tmp_path / "labels.csv"))
    assert torch.nonzero(test[0]["labels"]).flatten().tolist() == [5, 6]


def test_label_file_errors(voc, tmp_path):
    (tmp_path / "bad.csv").write_text("a,cat\nb,dgo\nc,car\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 2.*unknown class 'dgo'.*did you mean 'dog'.*valid class names: aeroplane"):
        VOC2012Dataset(str(voc), label_file=str(tmp_path / "bad.csv"))
    (tmp_path / "idx.json").write_text(json.dumps({"a": [20], "b": [1], "c": [2]}))
    with pytest.raises(DataError, match=r"entry 'a'.*index 20 is out of range 0\.\.19"):
        VOC2012Dataset(str(voc), label_file=str(tmp_path / "idx.json"))
    (tmp_path / "short.json").write_text(json.dumps({"a": [0]}))
    with pytest.raises(DataError, match=r"no entry for 2 image\(s\).*b, c"):
        VOC2012Dataset(str(voc), label_file=str(tmp_path / "short.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match=r"broken\.json is not valid JSON"):
        VOC2012Dataset(str(voc), label_file=str(tmp_path / "broken.json"))
    np.save(tmp_path / "cls_labels.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"(?s)cls_labels\.npy.*not supported.*np\.flatnonzero"):
        VOC2012Dataset(str(voc), label_file=str(tmp_path / "cls_labels.npy"))
    with pytest.raises(ValueError, match="labels_from='file' needs label_file"):
        VOC2012Dataset(str(voc), labels_from="file")


def test_empty_labels_raise_unless_allowed(voc):
    save_mask_png(voc / "SegmentationClassAug" / "b.png", np.zeros((H, W), dtype=np.uint8))
    ds = VOC2012Dataset(str(voc))
    with pytest.raises(DataError, match=r"image b .*b\.jpg.*empty label set.*allow_empty_labels"):
        ds[1]
    ok = VOC2012Dataset(str(voc), allow_empty_labels=True)[1]
    assert float(ok["labels"].sum()) == 0


def test_bad_files_raise_naming_the_file(voc):
    ds = VOC2012Dataset(str(voc))
    (voc / "SegmentationClassAug" / "a.png").unlink()
    assert (ds[0]["mask"][10:, :4] == 3).all()  # falls back to SegmentationClass
    (voc / "SegmentationClass" / "a.png").unlink()
    with pytest.raises(DataError, match=r"SegmentationClassAug/a\.png does not exist"):
        ds[0]
    save_mask_png(voc / "SegmentationClassAug" / "b.png", np.zeros((H + 1, W), dtype=np.uint8))
    with pytest.raises(DataError, match=rf"b\.png is {H + 1}x{W} but the image is {H}x{W}"):
        ds[1]
    bad = np.zeros((H, W), dtype=np.uint8)
    bad[0, 0] = 21
    save_mask_png(voc / "SegmentationClassAug" / "c.png", bad)
    with pytest.raises(DataError, match=r"c\.png has values outside 0\.\.20 and 255: \[21\]"):
        ds[2]
    data = (voc / "JPEGImages" / "b.jpg").read_bytes()
    (voc / "JPEGImages" / "b.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"b\.jpg.*truncated"):
        ds[1]


def test_grayscale_jpeg_is_converted(voc):
    Image.fromarray(np.full((H, W), 90, dtype=np.uint8)).save(voc / "JPEGImages" / "a.jpg")
    s = VOC2012Dataset(str(voc))[0]
    assert s["image"].shape == (3, H, W)
    assert torch.allclose(s["image"][0], s["image"][1])


def test_check_dataset_reports_every_problem(voc, tmp_path):
    make_voc(tmp_path / "more", ids=("a", "b", "c"))
    # five items with different problems plus a healthy one
    extra = ["d", "e", "f"]
    rng = np.random.default_rng(1)
    for name in extra:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
    lines = ["a", "b", "c"] + extra
    (voc / "ImageSets/SegmentationAug/train_aug.txt").write_text("\n".join(lines) + "\n")
    (voc / "JPEGImages" / "a.jpg").write_bytes(b"corrupt" * 10)  # unreadable image
    Image.fromarray(np.full((H, W), 50, dtype=np.uint8)).save(voc / "JPEGImages" / "b.jpg")  # grey -> note
    bad = np.zeros((H + 2, W), dtype=np.uint8)
    bad[0, 0] = 40
    save_mask_png(voc / "SegmentationClassAug" / "c.png", bad)  # mis-sized AND out of range
    # d: no mask at all
    save_mask_png(voc / "SegmentationClassAug" / "e.png", np.zeros((H, W), dtype=np.uint8))  # empty labels
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(voc / "SegmentationClassAug" / "f.png")

    ds = VOC2012Dataset(str(voc))
    problems = check_dataset(ds, progress=False)
    assert all(isinstance(p, DataProblem) for p in problems)
    found = sorted((p.name, p.problem) for p in problems)
    assert found == [
        ("a", "unreadable_image"),
        ("b", "non_rgb_image"),
        ("c", "mask_size"),
        ("c", "mask_values"),
        ("d", "missing_mask"),
        ("e", "empty_labels"),
        ("f", "mask_format"),
    ]
    by = {(p.name, p.problem): p for p in problems}
    assert by[("a", "unreadable_image")].file.endswith("a.jpg")
    assert by[("b", "non_rgb_image")].is_note
    assert f"is {H + 2}x{W} but the image is {H}x{W}" in by[("c", "mask_size")].message
    assert "[40]" in by[("c", "mask_values")].message
    report = format_problems(problems)
    assert report.startswith("6 error(s) in 5 item(s), 1 note(s)")
    assert "masks with out-of-range values (mask_values): 1" in report
    assert "[note] images that are not RGB" in report
    assert report.index("[note]") > report.index("mask_values")
    # a healthy fixture has no problems
    assert check_dataset(VOC2012Dataset(str(tmp_path / "more")), progress=False) == []
    assert format_problems([]) == "no problems found"


def test_registry_and_augment(voc):
    ds = wsss_kit.create("datasets", "voc2012", root=str(voc), split="train_aug",
                         augment={"crop_size": 8, "scale_range": [1.0, 1.0]})
    assert isinstance(ds, VOC2012Dataset) and VOC2012Dataset.wsss_api_version == "1.0"
    torch.manual_seed(0)
    s = ds[0]
    assert s["image"].shape == (3, 8, 8) and s["mask"].shape == (8, 8)
    assert torch.nonzero(s["labels"]).flatten().tolist() == [0, 14]  # labels from the full mask
