"""COCO2014Dataset, the RLE/polygon decoders and convert_coco_masks on a tiny COCO-layout fixture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import wsss_kit
from wsss_kit.data import COCO2014Dataset, check_dataset, convert_coco_masks, read_mask
from wsss_kit.data.coco_masks import decode_rle_counts, polygons_to_mask, rle_to_mask
from wsss_kit.errors import DataError

H, W = 10, 12
PERSON, CAR, DOG, TOOTHBRUSH = 1, 3, 17, 80  # mask values (contiguous index + 1)


def encode_counts(runs):
    """Test-side compressed-RLE encoder, written from the format description."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        while True:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
            if not more:
                break
    return "".join(out)


def runs_of(mask):
    flat = mask.T.reshape(-1).astype(np.uint8)  # column-major
    runs, current, count = [], 0, 0
    for v in flat:
        if v == current:
            count += 1
        else:
            runs.append(count)
            current, count = v, 1
    runs.append(count)
    return runs


def make_coco(root, split="train"):
    (root / f"{split}2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in (1, 2, 3):
        name = f"COCO_{split}2014_{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / f"{split}2014" / name)
        images.append({"id": i, "file_name": name, "height": H, "width": W})
    anns = [
        # image 1: a dog polygon, a person as list RLE, a toothbrush as compressed RLE, a crowd of cars
        {"id": 10, "image_id": 1, "category_id": 18, "iscrowd": 0, "area": 20.0,
         "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 5.0,
         "segmentation": {"size": [H, W], "counts": [8 * H + 2, 5, H * W - 8 * H - 7]}},
        {"id": 12, "image_id": 1, "category_id": 90, "iscrowd": 0, "area": 13.0,
         "segmentation": {"size": [H, W], "counts": "T3=7"}},
        {"id": 13, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": 6.0,
         "segmentation": {"size": [H, W], "counts": [7, 3, 7, 3, H * W - 20]}},
        # image 3: a large person with a small bicycle inside, listed first
        {"id": 30, "image_id": 3, "category_id": 2, "iscrowd": 0, "area": 4.0,
         "segmentation": [[4, 4, 5, 4, 5, 5, 4, 5]]},
        {"id": 31, "image_id": 3, "category_id": 1, "iscrowd": 0, "area": 80.0,
         "segmentation": [[0, 0, 9, 0, 9, 7, 0, 7]]},
    ]
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"},
                  {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
    (root / "annotations" / f"instances_{split}2014.json").write_text(
        json.dumps({"images": images[::-1], "annotations": anns, "categories": categories})
    )
    return root


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco")


def test_compressed_rle_hand_checked():
    assert encode_counts([100, 13, 7]) == "T3=7"  # 100 = 4 + 3*32: 'T' (4 | 0x20 more), '3'
    assert decode_rle_counts("T3=7") == [100, 13, 7]
    # from the 4th run on, the difference to the run two before is stored: 1 - 2 = -1 -> 'O'
    assert encode_counts([3, 2, 4, 1]) == "324O"
    assert decode_rle_counts("324O") == [3, 2, 4, 1]
    with pytest.raises(DataError, match="ends inside a number"):
        decode_rle_counts("T")
    with pytest.raises(DataError, match="invalid character"):
        decode_rle_counts("3 2")


def test_rle_round_trip_random_masks():
    rng = np.random.default_rng(3)
    for h, w in ((7, 5), (31, 40)):
        mask = rng.random((h, w)) < 0.3
        runs = runs_of(mask)
        assert sum(runs) == h * w
        np.testing.assert_array_equal(rle_to_mask({"size": [h, w], "counts": runs}), mask)
        np.testing.assert_array_equal(rle_to_mask({"size": [h, w], "counts": encode_counts(runs)}), mask)
    with pytest.raises(DataError, match=r"add up to 5 pixels but its size 2x3 has 6"):
        rle_to_mask({"size": [2, 3], "counts": [2, 3]})


def test_polygon_rasterisation():
    # pycocotools' rule: the square with corners (1, 1) and (5, 4) covers pixel columns 1-4 and rows
    # 1-3 (the right and bottom edges are outside), 12 pixels; PIL's fill gave 20
    m = polygons_to_mask([[1, 1, 5, 1, 5, 4, 1, 4]], H, W)
    assert m.dtype == bool and m.sum() == 12 and m[1:4, 1:5].all()
    assert polygons_to_mask([[1, 1, 2, 2]], H, W).sum() == 0  # degenerate outline skipped


def test_json_masks_and_labels(coco):
    ds = COCO2014Dataset(str(coco), split="train")
    assert ds.names == [f"COCO_train2014_{i:012d}" for i in (1, 2, 3)]
    assert ds.num_classes == 80 and len(ds.palette) == 81
    s = ds[0]
    assert s["image"].shape == (3, H, W) and s["mask"].dtype == torch.int64 and s["labels"].shape == (80,)
    mask = s["mask"].numpy()
    assert (mask[1:4, 1:5] == DOG).all() and (mask == DOG).sum() == 12  # pycocotools' pixels of the square
    assert (mask[2:7, 8] == PERSON).all() and (mask[:, 8] == PERSON).sum() == 5
    assert (mask[:, 10] == TOOTHBRUSH).all() and (mask[:3, 11] == TOOTHBRUSH).all() and mask[3, 11] == 0
    assert (mask[7:, :2] == 255).all()  # crowd -> ignore
    assert set(np.unique(mask)) == {0, PERSON, DOG, TOOTHBRUSH, 255}
    assert torch.nonzero(s["labels"]).flatten().tolist() == [PERSON - 1, CAR - 1, DOG - 1, TOOTHBRUSH - 1]
    third = ds[2]["mask"].numpy()
    assert third[4, 4] == 2 and (third == 2).sum() == 1  # the small bicycle stays on top of the large person
    assert (third == 1).sum() == 9 * 7 - 1 and (third[:7, :9] > 0).all()


def test_image_without_annotations(coco):
    ds = COCO2014Dataset(str(coco))
    with pytest.raises(DataError, match=r"COCO_train2014_000000000002.*empty label set.*allow_empty_labels"):
        ds[1]
    assert float(COCO2014Dataset(str(coco), allow_empty_labels=True)[1]["labels"].sum()) == 0
    kept = COCO2014Dataset(str(coco), skip_empty=True)
    assert kept.names == ["COCO_train2014_000000000001", "COCO_train2014_000000000003"]
    assert len(COCO2014Dataset(str(coco), max_images=1)) == 1


def test_convert_and_png_masks(coco, tmp_path):
    written = convert_coco_masks(str(coco), "train")
    assert written == 3
    out = coco / "mask" / "train2014"
    assert sorted(p.name for p in out.iterdir()) == [f"COCO_train2014_{i:012d}.png" for i in (1, 2, 3)]
    assert Image.open(out / "COCO_train2014_000000000001.png").mode == "P"
    assert convert_coco_masks(str(coco), "train") == 0  # existing files are skipped
    json_ds = COCO2014Dataset(str(coco))
    png_ds = COCO2014Dataset(str(coco), masks="png")
    for i in (0, 2):
        assert torch.equal(json_ds[i]["mask"], png_ds[i]["mask"])
        assert torch.equal(json_ds[i]["labels"], png_ds[i]["labels"])
    # without the annotation file, images are listed from the folder and labels come from masks
    (coco / "annotations" / "instances_train2014.json").unlink()
    no_json = COCO2014Dataset(str(coco), masks="png", allow_empty_labels=True)
    assert len(no_json) == 3
    assert torch.nonzero(no_json[0]["labels"]).flatten().tolist() == [PERSON - 1, DOG - 1, TOOTHBRUSH - 1]
    other = tmp_path / "other"
    assert convert_coco_masks(str(make_coco(tmp_path / "c2")), "train", out_dir=str(other), workers=2) == 3
    np.testing.assert_array_equal(read_mask(other / "COCO_train2014_000000000003.png", 80), png_ds[2]["mask"].numpy())


def test_layout_errors(tmp_path, coco):
    with pytest.raises(DataError, match=r"(?s)no COCO train2014 images.*annotations/instances_train2014\.json"):
        COCO2014Dataset(str(tmp_path / "nothing"))
    with pytest.raises(DataError, match=r"instances_val2014\.json does not exist"):
        (coco / "val2014").mkdir()
        COCO2014Dataset(str(coco), split="val")
    with pytest.raises(DataError, match=r"mask folder .*mask/train2014 does not exist.*convert_coco_masks"):
        COCO2014Dataset(str(coco), masks="png")
    with pytest.raises(ValueError, match="masks must be 'json' or 'png'"):
        COCO2014Dataset(str(coco), masks="rle")


def test_bad_annotations(coco):
    path = coco / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["category_id"] = 12  # an unused COCO id
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation 10 has category_id 12, which is not one of the 80"):
        COCO2014Dataset(str(coco))
    data["annotations"][0]["category_id"] = 18
    data["annotations"][1]["segmentation"]["counts"] = [1, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"instances_train2014\.json, image COCO_train2014_000000000001: annotation 11: RLE"):
        COCO2014Dataset(str(coco))[0]
    data["images"][2]["height"] = H + 1  # image 1 (listed last) disagrees with its file
    path.write_text(json.dumps(data))
    ds = COCO2014Dataset(str(coco))
    with pytest.raises(DataError, match=rf"COCO_train2014_000000000001\.jpg is {H}x{W} but .*says {H + 1}x{W}"):
        ds[0]
    problems = check_dataset(ds, progress=False)
    kinds = sorted((p.name[-1], p.problem) for p in problems)
    assert kinds == [("1", "mask_size"), ("1", "unreadable_mask"), ("2", "empty_labels")]


def test_registry(coco):
    ds = wsss_kit.create("datasets", "coco2014", root=str(coco), split="train", max_images=1)
    assert isinstance(ds, COCO2014Dataset) and len(ds) == 1
