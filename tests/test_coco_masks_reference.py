"""COCO masks bit-equal to pycocotools (``COCO.annToMask``): random polygons, crowd RLE, compressed
RLE, and the dataset's class-id mask on a tiny COCO layout."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.coco as pycoco  # a dependency: its absence fails these tests, it does not skip them
import pycocotools.mask as mask_api
import pytest
from PIL import Image

from wsss_kit.data import COCO2014Dataset
from wsss_kit.data.coco_masks import polygons_to_mask, rle_to_mask, segmentation_to_mask, semantic_mask
from wsss_kit.data.palette import COCO_CATEGORY_IDS
from wsss_kit.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def reference(segmentation, h, w):
    """What ``COCO.annToRLE`` + ``maskUtils.decode`` give, written out."""
    if isinstance(segmentation, list):
        rle = mask_api.merge(mask_api.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation["counts"], list):
        rle = mask_api.frPyObjects(segmentation, h, w)
    else:
        rle = segmentation
    return mask_api.decode(rle).astype(bool)


def random_outline(rng, h, w, points, spread=1.0):
    """A random outline whose points may fall on and beyond the image border."""
    xs = rng.uniform(-0.2 * w * spread, w * (1 + 0.2 * spread), points)
    ys = rng.uniform(-0.2 * h * spread, h * (1 + 0.2 * spread), points)
    # a third of the points snapped to the border lines and to whole / half pixels
    snap = rng.random(points) < 0.33
    xs[snap] = rng.choice([0.0, w, w - 1, 0.5, w - 0.5], snap.sum())
    ys[snap] = rng.choice([0.0, h, h - 1, 0.5, h - 0.5], snap.sum())
    half = rng.random(points) < 0.3
    xs[half], ys[half] = np.round(xs[half] * 2) / 2, np.round(ys[half] * 2) / 2
    return np.stack([xs, ys], 1).reshape(-1).tolist()


def test_random_polygons_equal_pycocotools():
    rng = np.random.default_rng(12)
    checked = pixels = 0
    for trial in range(400):
        h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        outlines = [random_outline(rng, h, w, int(rng.integers(3, 12)), spread=float(rng.random()))
                    for _ in range(int(rng.integers(1, 5)))]
        if trial % 4 == 0:  # degenerate outlines after a proper first one: 1-2 points, odd lengths
            outlines.append(random_outline(rng, h, w, int(rng.integers(1, 3))))
            outlines.append(random_outline(rng, h, w, 4)[:7])
        if trial % 7 == 0:  # collinear points: a zero-area outline
            outlines.append([1.0, 1.0, 3.0, 3.0, 5.0, 5.0])
        ours = polygons_to_mask(outlines, h, w)
        ref = reference(outlines, h, w)
        assert ours.shape == (h, w) and ours.dtype == bool
        np.testing.assert_array_equal(ours, ref, err_msg=f"trial {trial}: {h}x{w}, outlines {outlines}")
        checked += 1
        pixels += int(ref.sum())
    assert checked == 400 and pixels > 10_000  # the outlines covered real area, not only empty masks


def test_outlines_pycocotools_cannot_read():
    # a 4-number first outline is read as a box by frPyObjects (and raises); short outlines cover nothing
    assert polygons_to_mask([[1, 1, 2, 2]], 10, 12).sum() == 0
    assert polygons_to_mask([], 10, 12).shape == (10, 12)
    square = [1, 1, 5, 1, 5, 4, 1, 4]
    np.testing.assert_array_equal(polygons_to_mask([[1, 1, 2, 2], square], 10, 12), reference([square], 10, 12))
    with pytest.raises(DataError, match=r"flat list of numbers"):
        polygons_to_mask([[1, "a", 2, 2, 3, 3]], 10, 12)


def runs_of(mask):
    flat = np.concatenate([[0], mask.T.reshape(-1).astype(np.int8), [2]])
    edges = np.flatnonzero(np.diff(flat) != 0)
    runs = np.diff(np.concatenate([[0], edges])).tolist()
    if mask.T.reshape(-1)[:1].tolist() == [1]:
        runs = [0] + runs[1:]  # an RLE starts with a run of 0s, empty when the first pixel is set
    return [int(r) for r in runs]


def test_crowd_and_compressed_rle_equal_pycocotools():
    rng = np.random.default_rng(5)
    for trial in range(200):
        h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        if trial % 5 == 0:  # blobs: long runs, as in crowd regions
            mask = np.kron(rng.random((h // 4 + 1, w // 4 + 1)) < 0.5, np.ones((4, 4), bool))[:h, :w]
        runs = runs_of(mask)
        assert sum(runs) == h * w
        crowd = {"size": [h, w], "counts": runs}
        np.testing.assert_array_equal(rle_to_mask(crowd), reference(crowd, h, w))
        np.testing.assert_array_equal(rle_to_mask(crowd), mask)
        compressed = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        as_text = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
        np.testing.assert_array_equal(rle_to_mask(as_text), reference(compressed, h, w))
        np.testing.assert_array_equal(rle_to_mask(compressed), mask)  # bytes counts, as pycocotools writes them
        np.testing.assert_array_equal(segmentation_to_mask(as_text, h, w), mask)


def test_bad_rle_is_a_data_error_not_a_crash():
    with pytest.raises(DataError, match=r"add up to 7 pixels but its size 2x3 has 6"):
        rle_to_mask({"size": [2, 3], "counts": [2, 3, 2]})
    with pytest.raises(DataError, match=r"RLE is 2x3 but the image is 3x2"):
        segmentation_to_mask({"size": [2, 3], "counts": [6]}, 3, 2)


H, W = 24, 30


def build_layout(root, rng):
    """A COCO 2014 layout whose images hold overlapping polygons, crowd RLE and compressed RLE."""
    (root / "train2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    categories = [{"id": cid, "name": f"c{cid}"} for cid in (1, 2, 3, 18, 90)]
    images, anns = [], []
    for i in range(1, 7):
        name = f"COCO_train2014_{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "train2014" / name)
        images.append({"id": i, "file_name": name, "height": H, "width": W})
        for k in range(int(rng.integers(2, 6))):
            cat = int(rng.choice([c["id"] for c in categories]))
            kind = k % 3 if i > 1 else 0
            if kind == 0:
                seg = [random_outline(rng, H, W, int(rng.integers(3, 9))) for _ in range(int(rng.integers(1, 3)))]
                crowd = 0
            else:
                blob = np.zeros((H, W), bool)
                y, x = int(rng.integers(0, H - 4)), int(rng.integers(0, W - 4))
                blob[y:y + int(rng.integers(3, 12)), x:x + int(rng.integers(3, 14))] = True
                if kind == 1:  # crowd: uncompressed RLE
                    seg, crowd = {"size": [H, W], "counts": runs_of(blob)}, 1
                else:  # compressed RLE string
                    enc = mask_api.encode(np.asfortranarray(blob.astype(np.uint8)))
                    seg, crowd = {"size": [H, W], "counts": enc["counts"].decode("ascii")}, 0
            area = float(reference(seg, H, W).sum())
            anns.append({"id": 100 * i + k, "image_id": i, "category_id": cat, "iscrowd": crowd,
                         "area": area, "segmentation": seg, "bbox": [0, 0, 1, 1]})
    path = root / "annotations" / "instances_train2014.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def test_dataset_masks_equal_pycocotools_ann_to_mask(tmp_path):
    path = build_layout(tmp_path / "coco", np.random.default_rng(7))
    coco = pycoco.COCO(str(path))
    ds = COCO2014Dataset(str(tmp_path / "coco"), split="train", allow_empty_labels=True)
    contiguous = {cid: idx + 1 for idx, cid in enumerate(COCO_CATEGORY_IDS)}
    crowd_seen = overlap_seen = 0
    for index, image_id in enumerate(sorted(coco.getImgIds())):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
        expected = np.zeros((H, W), np.int64)
        painted = np.zeros((H, W), np.int64)
        # the dataset's rule: crowd regions 255 first, then instances from the largest to the smallest
        order = [a for a in anns if a["iscrowd"]] + sorted((a for a in anns if not a["iscrowd"]),
                                                           key=lambda a: -a["area"])
        for ann in order:
            region = coco.annToMask(ann).astype(bool)
            overlap_seen += int((painted[region] > 0).any())
            painted[region] += 1
            expected[region] = 255 if ann["iscrowd"] else contiguous[ann["category_id"]]
            crowd_seen += int(ann["iscrowd"])
        got = ds[index]["mask"].numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"image {image_id}")
        direct = [{"class": contiguous[a["category_id"]], **a} for a in anns]
        np.testing.assert_array_equal(semantic_mask(direct, H, W), expected.astype(np.uint8))
    assert crowd_seen > 0 and overlap_seen > 0  # the layout exercised crowd and overlap order
