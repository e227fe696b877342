import numpy as np
import pytest
import torch
from PIL import Image

from wsss_kit.viz import (
    cam_grid,
    cam_overlay,
    colorize_mask,
    jet_colormap,
    make_grid,
    save_png,
    to_uint8_image,
)

PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def test_to_uint8_image_accepts_tensor_chw_and_array_hwc():
    t = torch.zeros(3, 5, 7)
    t[0] = 1.0
    out = to_uint8_image(t)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()
    arr = np.full((5, 7, 3), 9, np.uint8)
    assert np.array_equal(to_uint8_image(arr), arr)
    assert to_uint8_image(torch.rand(1, 3, 4, 6)).shape == (4, 6, 3)
    assert to_uint8_image(np.zeros((4, 6))).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="shape"):
        to_uint8_image(np.zeros((4, 6, 5)))


def test_colorize_mask_with_ignore():
    mask = torch.tensor([[0, 1], [2, 255]])
    out = colorize_mask(mask, PALETTE)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert tuple(out[0, 1]) == (128, 0, 0) and tuple(out[1, 0]) == (0, 128, 0)
    assert tuple(out[1, 1]) == (255, 255, 255)  # palette too short: white
    full = [(i, i, i) for i in range(256)]
    full[255] = (224, 224, 192)
    assert tuple(colorize_mask(mask, full)[1, 1]) == (224, 224, 192)
    flat = [v for rgb in PALETTE for v in rgb]
    assert np.array_equal(colorize_mask(mask, flat), out)
    with pytest.raises(ValueError, match=r"mask values \[3\] have no colour in a palette of 3"):
        colorize_mask(np.array([[3]]), PALETTE)


def test_jet_colormap_endpoints():
    c = jet_colormap(np.array([0.0, 0.5, 1.0]))
    assert c.dtype == np.uint8 and c.shape == (3, 3)
    assert c[0, 2] > 100 and c[0, 0] == 0  # low: blue
    assert c[1, 1] == 255  # middle: green at full
    assert c[2, 0] > 100 and c[2, 2] == 0  # high: red


def test_cam_overlay_blends():
    img = np.zeros((4, 4, 3), np.uint8)
    cam = np.ones((4, 4), np.float32)
    out = cam_overlay(img, cam, alpha=0.5)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out, (jet_colormap(cam).astype(np.float32) * 0.5).round().astype(np.uint8))
    assert np.array_equal(cam_overlay(img, cam, alpha=0.0), img)
    with pytest.raises(ValueError, match="cam is 3x4 but the image is 4x4"):
        cam_overlay(img, np.zeros((3, 4)))


def test_make_grid_and_cam_grid_sizes():
    a = np.zeros((10, 12, 3), np.uint8)
    b = torch.rand(3, 8, 6)
    grid = make_grid([[a, b], [b]], row_titles=["r1", "row two"], col_titles=["x", "y"], pad=2)
    assert isinstance(grid, Image.Image) and grid.mode == "RGB"
    w, h = grid.size
    assert w > 12 + 6 + 3 * 2 and h > 10 + 8 + 3 * 2  # titles take room
    plain = make_grid([[a, a]], pad=0)
    assert plain.size == (24, 10)
    # Labels are drawn: the title band is not blank.
    titled = np.asarray(make_grid([[a]], col_titles=["label"], pad=2))
    assert (titled[:-12] < 128).any()

    cams = torch.zeros(3, 10, 12)
    cams[1] = 1.0
    grid = cam_grid(a, cams, torch.tensor([0.0, 1.0, 1.0]), ["cat", "dog", "cow"])
    assert grid.size[0] >= 3 * 12 and grid.size[1] > 10
    with pytest.raises(ValueError, match="class names"):
        cam_grid(a, cams, torch.ones(3), ["cat"])


def test_save_png_is_atomic_and_readable(tmp_path):
    img = torch.rand(3, 9, 11)
    path = save_png(tmp_path / "sub" / "pic.png", img)
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["pic.png"]
    back = np.asarray(Image.open(path))
    assert back.shape == (9, 11, 3)
    assert np.array_equal(back, to_uint8_image(img))
    save_png(path, make_grid([[img]]))
    assert sorted(p.name for p in path.parent.iterdir()) == ["pic.png"]


def test_save_png_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "pic.png"
    save_png(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(target, np.full((4, 4, 3), 200, np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]
    assert target.read_bytes() == before
