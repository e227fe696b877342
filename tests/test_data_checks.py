"""check_dataset / format_problems: every problem in one pass, for file-based and custom datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_kit import WSSSDataset
from wsss_kit.data import DataProblem, FolderDataset, check_dataset, format_problems, save_mask_png
from wsss_kit.errors import DataError


class Custom(WSSSDataset):
    """A dataset without check_item: check_dataset loads items and checks the contract."""

    class_names = ("a", "b")
    palette = ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    names = ["ok", "raises", "crashes", "wrong_dtype", "bad_mask", "empty"]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        name = self.names[index]
        image = torch.rand(3, 4, 5)
        labels = torch.tensor([1.0, 0.0])
        mask = torch.zeros(4, 5, dtype=torch.int64)
        mask[0, 0] = 1  # class "a", as the labels say
        if name == "raises":
            raise DataError("image raises.jpg is broken")
        if name == "crashes":
            raise OSError("disk on fire")
        if name == "wrong_dtype":
            image = (image * 255).to(torch.uint8)
        if name == "bad_mask":
            mask = torch.full((3, 5), 7, dtype=torch.int64)
        if name == "empty":
            labels, mask = torch.zeros(2), torch.zeros(4, 5, dtype=torch.int64)
        return {"image": image, "labels": labels, "mask": mask, "name": name}


def test_fallback_reports_every_item():
    problems = check_dataset(Custom(), progress=False)
    found = sorted((p.name, p.problem) for p in problems)
    assert found == [
        ("bad_mask", "mask_size"),
        ("bad_mask", "mask_values"),
        ("crashes", "error"),
        ("empty", "empty_labels"),
        ("raises", "error"),
        ("wrong_dtype", "bad_sample"),
    ]
    msgs = {p.name: p.message for p in problems}
    assert "raises.jpg is broken" in msgs["raises"]
    assert "OSError: disk on fire" in msgs["crashes"]
    assert "float32 (3, H, W)" in msgs["wrong_dtype"] and "uint8" in msgs["wrong_dtype"]


def test_folder_fixture_with_several_broken_files(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["good", "corrupt", "rgba", "nomask", "bigmask", "badvals", "empty", "truncated"]
    for n in names:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "images" / f"{n}.png")
        m = np.zeros((16, 16), dtype=np.uint8)
        m[4:8, 4:8] = 1
        if n != "nomask":
            save_mask_png(root / "masks" / f"{n}.png", m)
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)).save(root / "images" / "rgba.png")
    save_mask_png(root / "masks" / "bigmask.png", np.ones((20, 16), dtype=np.uint8))
    save_mask_png(root / "masks" / "badvals.png", np.full((16, 16), 9, dtype=np.uint8))
    save_mask_png(root / "masks" / "empty.png", np.zeros((16, 16), dtype=np.uint8))
    data = (root / "images" / "truncated.png").read_bytes()
    (root / "images" / "truncated.png").write_bytes(data[: len(data) // 3])
    (root / "labels.csv").write_text("".join(f"{n},{'' if n == 'empty' else 'x'}\n" for n in names))

    ds = FolderDataset(str(root), ["x", "y"], mask_dir="masks")
    # labels come from the file here, so the all-background mask of "empty" is fine; its label row is empty
    problems = check_dataset(ds, progress=False)
    found = sorted((p.name, p.problem) for p in problems)
    assert found == [
        ("badvals", "mask_values"),
        ("bigmask", "mask_size"),
        ("corrupt", "unreadable_image"),
        ("empty", "empty_labels"),
        ("nomask", "missing_mask"),
        ("rgba", "non_rgb_image"),
        ("truncated", "unreadable_image"),
    ]
    for p in problems:
        assert p.name in p.message or p.name in p.file
    report = format_problems(problems, max_per_kind=1)
    assert "unreadable or corrupt images (unreadable_image): 2" in report
    assert "... and 1 more" in report
    # each broken item also fails on its own when read
    for p in problems:
        if not p.is_note:
            try:
                ds[ds.names.index(p.name)]
            except DataError:
                continue
            raise AssertionError(f"{p.name} loaded despite {p.problem}")


def test_problem_record():
    p = DataProblem("n", "f.png", "non_rgb_image", "image f.png is a L image")
    assert p.is_note and not DataProblem("n", "f", "mask_size", "m").is_note
    assert "1 note(s)" in format_problems([p])


# ---------------------------------------------------------------- labels against masks
def test_check_labels_against_mask_hand_cases():
    from wsss_kit.data.checks import check_labels_against_mask

    mask = np.array([[0, 1], [255, 3]])
    names = ("cat", "dog", "cow")
    assert check_labels_against_mask(torch.tensor([1.0, 0.0, 1.0]), mask, "a", names) is None
    extra = check_labels_against_mask(torch.tensor([1.0, 0.0, 0.0]), mask, "a", names)
    assert extra == ("a: labels and ground-truth mask disagree: the mask shows 'cow' (mask value 3) that the labels "
                     "do not name (labels: 'cat' (mask value 1); mask: 'cat' (mask value 1), 'cow' (mask value 3)); "
                     "fix the label file or the mask")
    both = check_labels_against_mask(np.array([0, 1, 1]), mask, "b")
    assert "the mask shows class (mask value 1) that the labels do not name" in both
    assert "the labels name class (mask value 2) that the mask does not show" in both
    assert check_labels_against_mask(torch.tensor([1.0, 1.0, 1.0]), mask, "c", allow_hidden=True) is None
    assert check_labels_against_mask(torch.tensor([0.0, 1.0, 0.0]), np.full((2, 2), 255), "no gt") is None
    assert "labels name" in check_labels_against_mask(torch.tensor([0.0, 1.0, 0.0]), np.zeros((2, 2)), "bg only")


def _folder_with_labels(tmp_path, rows):
    root = tmp_path / "lm"
    (root / "images").mkdir(parents=True)
    for name in rows:
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        m = np.zeros((8, 8), dtype=np.uint8)
        m[:4] = 1   # x
        m[4:6] = 2  # y
        save_mask_png(root / "masks" / f"{name}.png", m)
    (root / "labels.csv").write_text("".join(f"{n},{labels}\n" for n, labels in rows.items()))
    return FolderDataset(str(root), ["x", "y", "z"], mask_dir="masks")


def test_labels_that_disagree_with_the_mask_are_errors(tmp_path):
    ds = _folder_with_labels(tmp_path, {"agree": "x;y", "lacks_y": "x", "extra_z": "x;y;z"})
    problems = check_dataset(ds, progress=False)
    assert sorted((p.name, p.problem) for p in problems) == [
        ("extra_z", "label_mask_mismatch"), ("lacks_y", "label_mask_mismatch")]
    msgs = {p.name: p.message for p in problems}
    assert "the mask shows 'y' (mask value 2) that the labels do not name" in msgs["lacks_y"]
    assert "the labels name 'z' (mask value 3) that the mask does not show" in msgs["extra_z"]
    assert "labels.csv" in msgs["lacks_y"] and "lacks_y.png" in msgs["lacks_y"]
    assert not any(p.is_note for p in problems)
    assert "labels that disagree with the ground-truth mask (label_mask_mismatch): 2" in format_problems(problems)


def test_datasets_whose_masks_hide_labelled_classes_check_one_direction(tmp_path):
    ds = _folder_with_labels(tmp_path, {"extra_z": "x;y;z", "lacks_y": "x"})
    ds.labels_may_exceed_mask = True  # as COCO2014Dataset declares (crowd regions are 255)
    assert [p.name for p in check_dataset(ds, progress=False)] == ["lacks_y"]


class _LabelledCustom(WSSSDataset):
    class_names = ("a", "b")
    names = ["fine", "wrong"]

    def __init__(self, augment=None):
        self.augment = augment

    def __len__(self):
        return 2

    def __getitem__(self, index):
        mask = torch.zeros(4, 5, dtype=torch.int64)
        mask[0, 0] = 1 if index == 0 else 2
        return {"image": torch.rand(3, 4, 5), "labels": torch.tensor([1.0, 0.0]), "mask": mask,
                "name": self.names[index]}


def test_fallback_compares_labels_only_for_unaugmented_samples():
    found = check_dataset(_LabelledCustom(), progress=False)
    assert [(p.name, p.problem) for p in found] == [("wrong", "label_mask_mismatch")]
    assert "the mask shows 'b' (mask value 2)" in found[0].message
    assert check_dataset(_LabelledCustom(augment=lambda s: s), progress=False) == []


# ---------------------------------------------------------------- images over the pixel limit
def test_an_image_over_the_pixel_limit_is_an_error_with_the_limit(tmp_path, monkeypatch):
    ds = _folder_with_labels(tmp_path, {"small": "x;y"})
    Image.fromarray(np.zeros((8, 9, 3), dtype=np.uint8)).save(tmp_path / "lm" / "images" / "small.png")
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "70")
    problems = check_dataset(ds, progress=False)
    assert [p.problem for p in problems] == ["image_too_large"]
    assert "small.png is 9x8" in problems[0].message and "limit of 7e-05 Mpx (70 pixels)" in problems[0].message
    assert "WSSS_KIT_MAX_IMAGE_PIXELS" in format_problems(problems)
    with pytest.raises(DataError, match="small.png is 9x8"):
        ds[0]


def test_a_malformed_pixel_limit_stops_the_check_once(tmp_path, monkeypatch):
    from wsss_kit.errors import ConfigError

    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "big")
    with pytest.raises(ConfigError, match="WSSS_KIT_MAX_IMAGE_PIXELS='big'"):
        check_dataset(_LabelledCustom(), progress=False)
