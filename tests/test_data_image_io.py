"""Image/mask reading and writing, palettes and class tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_kit.data import (
    COCO_CATEGORY_IDS,
    COCO_CLASSES,
    VOC_CLASSES,
    MaskFormatError,
    read_image,
    read_mask,
    save_image_png,
    save_mask_png,
    voc_colormap,
)
from wsss_kit.data.image_io import read_image_with_mode
from wsss_kit.errors import DataError


def rgb(h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- palettes and tables
def test_voc_colormap_hand_values():
    cmap = voc_colormap()
    assert len(cmap) == 256
    assert cmap[0] == (0, 0, 0)
    assert cmap[1] == (128, 0, 0)
    assert cmap[2] == (0, 128, 0)
    assert cmap[3] == (128, 128, 0)
    assert cmap[8] == (64, 0, 0)  # bit 3 of the index -> red bit 6
    assert cmap[15] == (192, 128, 128)  # person
    assert cmap[255] == (224, 224, 192)  # ignore
    assert voc_colormap(21) == cmap[:21]
    with pytest.raises(ValueError):
        voc_colormap(300)
    cmap[0] = (1, 1, 1)  # a caller's copy: the map itself is computed once and cannot be changed
    assert voc_colormap()[0] == (0, 0, 0)


def test_flat_palette_pads_with_the_voc_map_and_hands_out_copies():
    from wsss_kit.data.image_io import flat_palette

    flat = flat_palette([(1, 2, 3), [4, 5, 6]])
    assert flat[:6] == [1, 2, 3, 4, 5, 6] and flat[6:9] == [0, 128, 0] and flat[-3:] == [224, 224, 192]
    flat[0] = 99
    assert flat_palette([(1, 2, 3), [4, 5, 6]])[0] == 1 and flat_palette(None)[:3] == [0, 0, 0]
    with pytest.raises(ValueError, match=r"palette entry 1 must be an \(R, G, B\) triple"):
        flat_palette([(1, 2, 3), (4, 5)])
    with pytest.raises(ValueError, match="at most 256"):
        flat_palette([(0, 0, 0)] * 257)


def test_class_tables():
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert len(COCO_CLASSES) == 80 and len(COCO_CATEGORY_IDS) == 80
    assert len(set(COCO_CATEGORY_IDS)) == 80 and list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)
    assert COCO_CATEGORY_IDS[0] == 1 and COCO_CATEGORY_IDS[-1] == 90
    missing = sorted(set(range(1, 91)) - set(COCO_CATEGORY_IDS))
    assert missing == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert COCO_CLASSES[COCO_CATEGORY_IDS.index(18)] == "dog"
    assert COCO_CLASSES[COCO_CATEGORY_IDS.index(90)] == "toothbrush"


# ---------------------------------------------------------------- read_image
def test_read_rgb_png_and_jpeg(tmp_path):
    a = rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, a)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=95)
    assert read_image(tmp_path / "a.jpg").shape == (6, 8, 3)


def test_grayscale_is_replicated(tmp_path):
    g = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(g).save(tmp_path / "g.png")
    out, mode = read_image_with_mode(tmp_path / "g.png")
    assert mode == "L" and out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    a = rgb()
    alpha = np.zeros((6, 8, 1), dtype=np.uint8)  # fully transparent: colour must survive
    Image.fromarray(np.concatenate([a, alpha], axis=2)).save(tmp_path / "a.png")
    out, mode = read_image_with_mode(tmp_path / "a.png")
    assert mode == "RGBA"
    np.testing.assert_array_equal(out, a)


def test_palette_image_uses_its_colours(tmp_path):
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = Image.fromarray(idx).convert("P")
    img.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * (768 - 9))
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0, 1], [40, 50, 60])
    np.testing.assert_array_equal(out[1, 0], [70, 80, 90])


def test_16bit_is_scaled(tmp_path):
    values = np.array([[0, 257, 65535], [32768, 1000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    out, mode = read_image_with_mode(tmp_path / "g16.png")
    assert mode.startswith("I")
    expected = np.round(values.astype(float) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    assert out[0, 1, 0] == 1 and out[0, 2, 0] == 255 and out[1, 0, 1] == 128


def test_cmyk_is_converted(tmp_path):
    a = rgb(8, 8)
    Image.fromarray(a).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    out, mode = read_image_with_mode(tmp_path / "c.jpg")
    assert mode == "CMYK" and out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - a.astype(int)).mean() < 20  # lossy, but the same picture


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.jpg does not exist"):
        read_image(tmp_path / "nope.jpg")


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg" * 20)
    with pytest.raises(DataError, match=r"bad\.jpg.*not a readable image"):
        read_image(tmp_path / "bad.jpg")


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_image_is_caught(tmp_path, ext):
    Image.fromarray(rgb(64, 64)).save(tmp_path / f"full.{ext}")
    data = (tmp_path / f"full.{ext}").read_bytes()
    (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"cut\.{ext}.*(truncated|decoded)"):
        read_image(tmp_path / f"cut.{ext}")


# ---------------------------------------------------------------- masks
def save_p(path, mask):
    save_mask_png(path, mask, voc_colormap(256))


def test_read_palette_and_gray_masks(tmp_path):
    m = np.array([[0, 1, 2], [255, 20, 0]], dtype=np.uint8)
    save_p(tmp_path / "m.png", m)
    assert Image.open(tmp_path / "m.png").mode == "P"
    out = read_mask(tmp_path / "m.png", num_classes=20, expected_size=(2, 3))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, m)
    Image.fromarray(m).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png", 20), m)


def test_rgb_mask_is_refused(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "colour.png")
    with pytest.raises(MaskFormatError, match=r"colour\.png is a RGB image.*palette"):
        read_mask(tmp_path / "colour.png", 20)


def test_mask_size_mismatch_message(tmp_path):
    save_p(tmp_path / "2007_000032.png", np.zeros((300, 400), dtype=np.uint8))
    with pytest.raises(DataError, match=r"2007_000032\.png is 300x400 but the image is 375x500"):
        read_mask(tmp_path / "2007_000032.png", 20, expected_size=(375, 500))


def test_mask_out_of_range_values_are_listed(tmp_path):
    m = np.array([[0, 3, 21], [200, 255, 1]], dtype=np.uint8)
    save_p(tmp_path / "m.png", m)
    with pytest.raises(DataError, match=r"m\.png has values outside 0\.\.20 and 255: \[21, 200\]"):
        read_mask(tmp_path / "m.png", 20)
    assert read_mask(tmp_path / "m.png", 200).max() == 255


def test_missing_and_corrupt_masks(tmp_path):
    with pytest.raises(DataError, match="gone.png does not exist"):
        read_mask(tmp_path / "gone.png", 20)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png"):
        read_mask(tmp_path / "broken.png", 20)


def test_save_mask_png_palette_and_tensor(tmp_path):
    m = torch.tensor([[0, 1], [255, 5]])
    save_mask_png(tmp_path / "sub" / "t.png", m, [(0, 0, 0), (1, 2, 3)])
    img = Image.open(tmp_path / "sub" / "t.png")
    assert img.mode == "P"
    pal = img.getpalette()
    assert pal[3:6] == [1, 2, 3]
    assert pal[255 * 3: 255 * 3 + 3] == [224, 224, 192]  # padded with the VOC map
    assert pal[5 * 3: 5 * 3 + 3] == list(voc_colormap()[5])
    np.testing.assert_array_equal(np.asarray(img), m.numpy())
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.png"]  # no temp file left
    with pytest.raises(ValueError, match="0..255"):
        save_mask_png(tmp_path / "x.png", np.array([[0, 300]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        save_mask_png(tmp_path / "x.png", np.zeros((2, 2, 2), dtype=np.uint8))
    assert not (tmp_path / "x.png").exists()


def test_save_image_png_uint8_and_float(tmp_path):
    a = rgb()
    save_image_png(tmp_path / "u.png", a)
    np.testing.assert_array_equal(read_image(tmp_path / "u.png"), a)
    f = torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)
    save_image_png(tmp_path / "f.png", f)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png"), a)
    with pytest.raises(ValueError, match=r"float image must be \(3, H, W\)"):
        save_image_png(tmp_path / "bad.png", np.zeros((6, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        save_image_png(tmp_path / "bad.png", np.zeros((3, 6, 8), dtype=np.int32))


# ---------------------------------------------------------------- size limit
def png_header_only(path, width, height):
    """A PNG whose header claims ``width x height`` RGB pixels and that holds no pixel data."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_max_image_pixels_default_and_environment(monkeypatch):
    from wsss_kit.data.image_io import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels
    from wsss_kit.errors import ConfigError

    monkeypatch.delenv("WSSS_KIT_MAX_IMAGE_PIXELS", raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 40_000_000
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "1e8")
    assert max_image_pixels() == 100_000_000
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "100_000")
    assert max_image_pixels() == 100_000
    for bad in ("lots", "0", "-5", "2.5", "inf"):
        monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", bad)
        with pytest.raises(ConfigError, match=f"WSSS_KIT_MAX_IMAGE_PIXELS='{bad}' must be a positive whole number"):
            max_image_pixels()


def test_an_81_megapixel_image_is_refused_from_its_header(tmp_path, monkeypatch):
    from wsss_kit.data.image_io import ImageTooLargeError

    monkeypatch.delenv("WSSS_KIT_MAX_IMAGE_PIXELS", raising=False)
    path = png_header_only(tmp_path / "huge.png", 9000, 9000)
    with pytest.raises(ImageTooLargeError, match=(
            r"image .*huge\.png is 9000x9000 = 81\.0 Mpx, more than the limit of 40 Mpx \(40,000,000 pixels\).*"
            r"WSSS_KIT_MAX_IMAGE_PIXELS=<pixels>")):
        read_image(path)
    with pytest.raises(ImageTooLargeError, match=r"mask .*huge\.png is 9000x9000"):
        read_mask(path, 20)


def test_an_image_over_pils_own_limit_is_a_data_error(tmp_path, monkeypatch):
    from wsss_kit.data.image_io import ImageTooLargeError

    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "1e9")
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 Mpx: PIL refuses it at open
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png is refused by PIL as too large.*MAX_IMAGE_PIXELS"):
        read_image(path)


def test_the_limit_is_configurable_through_the_environment(tmp_path, monkeypatch):
    from wsss_kit.data.image_io import ImageTooLargeError

    Image.fromarray(rgb(40, 50)).save(tmp_path / "small.png")
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "1999")
    with pytest.raises(ImageTooLargeError, match=r"small\.png is 50x40 = 0\.0 Mpx, more than the limit of 0\.001999 Mpx"):
        read_image(tmp_path / "small.png")
    monkeypatch.setenv("WSSS_KIT_MAX_IMAGE_PIXELS", "2000")
    assert read_image(tmp_path / "small.png").shape == (40, 50, 3)


def test_out_of_memory_while_decoding_names_the_file(tmp_path, monkeypatch):
    Image.fromarray(rgb(8, 8)).save(tmp_path / "oom.png")

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(Image.Image, "load", no_memory)
    monkeypatch.setattr("PIL.PngImagePlugin.PngImageFile.load", no_memory, raising=False)
    with pytest.raises(DataError, match=r"oom\.png \(8x8\) could not be decoded: out of memory"):
        read_image(tmp_path / "oom.png")
