"""check_dataset / format_problems: every problem in one pass, for file-based and custom datasets."""

from __future__ import annotations

import numpy as np
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
        if name == "raises":
            raise DataError("image raises.jpg is broken")
        if name == "crashes":
            raise OSError("disk on fire")
        if name == "wrong_dtype":
            image = (image * 255).to(torch.uint8)
        if name == "bad_mask":
            mask = torch.full((3, 5), 7, dtype=torch.int64)
        if name == "empty":
            labels = torch.zeros(2)
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
