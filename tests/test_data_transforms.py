"""TrainAugment: sizes, padding values, shared geometry, determinism, config errors."""

from __future__ import annotations

import pytest
import torch

from wsss_kit.data import TrainAugment, build_augment
from wsss_kit.errors import ConfigError


def sample(h=20, w=30):
    torch.manual_seed(123)
    image = torch.rand(3, h, w)
    mask = torch.randint(0, 6, (h, w))
    return {"image": image, "labels": torch.tensor([1.0, 0.0]), "mask": mask, "name": "x"}


@pytest.mark.parametrize("crop", [16, (12, 40)])
def test_output_sizes_and_dtypes(crop):
    aug = TrainAugment(crop, scale_range=(0.5, 1.5))
    s = sample()
    for seed in range(5):
        torch.manual_seed(seed)
        out = aug(s)
        ch, cw = (crop, crop) if isinstance(crop, int) else crop
        assert out["image"].shape == (3, ch, cw) and out["image"].dtype == torch.float32
        assert out["mask"].shape == (ch, cw) and out["mask"].dtype == torch.int64
        assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
        assert torch.equal(out["labels"], s["labels"]) and out["name"] == "x"
    assert s["image"].shape == (3, 20, 30)  # input not modified


def test_padding_uses_ignore_index_and_zero():
    aug = TrainAugment((40, 50), scale_range=(1.0, 1.0), flip=False, photometric=False)
    s = sample(10, 12)
    s["image"] = s["image"] * 0.5 + 0.5  # strictly positive, so zero padding is visible
    s["target"] = torch.zeros(10, 12, dtype=torch.int64)
    out = aug(s)
    # the crop covers everything, so the 10x12 content sits at the top-left
    assert torch.equal(out["mask"][:10, :12], s["mask"])
    assert (out["mask"][10:] == 255).all() and (out["mask"][:, 12:] == 255).all()
    assert (out["target"][10:] == 255).all() and (out["target"][:10, :12] == 0).all()
    assert (out["image"][:, 10:] == 0).all() and (out["image"][:, :, 12:] == 0).all()
    assert torch.allclose(out["image"][:, :10, :12], s["image"])
    custom = TrainAugment(30, scale_range=(1.0, 1.0), photometric=False, ignore_index=254)(sample(10, 12))
    assert (custom["mask"] == 254).sum() == 30 * 30 - 10 * 12


def test_image_and_masks_share_the_geometry():
    # Encode the mask in the image: after any crop/scale/flip they must still agree.
    h, w = 24, 32
    mask = torch.randint(0, 8, (h // 4, w // 4)).repeat_interleave(4, 0).repeat_interleave(4, 1)
    image = (mask.float() / 8.0)[None].repeat(3, 1, 1)
    aug = TrainAugment(16, scale_range=(0.75, 1.25), flip=True, photometric=False, mask_keys=("mask", "seeds"))
    for seed in range(10):
        torch.manual_seed(seed)
        out = aug({"image": image, "mask": mask, "seeds": mask.clone(), "name": "m"})
        assert torch.equal(out["mask"], out["seeds"])
        valid = out["mask"] != 255
        # away from block borders bilinear = nearest; compare where the 3x3 neighbourhood agrees
        m = out["mask"].float()
        same = torch.ones_like(valid)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                same &= torch.roll(m, (dy, dx), (0, 1)) == m
        inner = valid & same
        inner[0], inner[-1], inner[:, 0], inner[:, -1] = False, False, False, False
        assert inner.any()
        assert torch.allclose(out["image"][0][inner] * 8.0, m[inner], atol=1e-4)


def test_flip_only_is_a_mirror():
    s = sample(8, 8)
    aug = TrainAugment(8, scale_range=(1.0, 1.0), flip=True, photometric=False)
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = aug(s)
        if torch.equal(out["mask"], s["mask"]):
            seen.add("same")
            assert torch.equal(out["image"], s["image"])
        else:
            assert torch.equal(out["mask"], s["mask"].flip(-1))
            assert torch.equal(out["image"], s["image"].flip(-1))
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_deterministic_under_manual_seed():
    aug = TrainAugment(16)
    s = sample()
    torch.manual_seed(7)
    a = aug(s)
    torch.manual_seed(7)
    b = aug(s)
    torch.manual_seed(8)
    c = aug(s)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])


def test_photometric_changes_colours_but_not_masks():
    s = sample()
    aug = TrainAugment((20, 30), scale_range=(1.0, 1.0), flip=False, photometric=True)
    changed = 0
    for seed in range(10):
        torch.manual_seed(seed)
        out = aug(s)
        assert torch.equal(out["mask"], s["mask"])
        changed += not torch.allclose(out["image"], s["image"])
    assert changed >= 5


def test_bad_inputs():
    with pytest.raises(ValueError, match="crop_size"):
        TrainAugment(0)
    with pytest.raises(ValueError, match="scale_range"):
        TrainAugment(8, scale_range=(2.0, 1.0))
    s = sample()
    s["mask"] = s["mask"][:5]
    with pytest.raises(ValueError, match=r"sample\['mask'\] is \(5, 30\) but the image is \(20, 30\)"):
        TrainAugment(8)(s)


def test_build_augment():
    assert build_augment(None) is None
    aug = build_augment({"crop_size": [8, 10], "scale_range": [0.9, 1.1]})
    assert isinstance(aug, TrainAugment) and aug.crop_size == (8, 10)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'crop'.*valid keys: crop_size"):
        build_augment({"crop": 8})
    with pytest.raises(ConfigError, match="crop_size.*required"):
        build_augment({"flip": False})
    with pytest.raises(ConfigError, match="scale_range"):
        build_augment({"crop_size": 8, "scale_range": [0, 1]})

    def mine(x):
        return x

    assert build_augment(mine) is mine
