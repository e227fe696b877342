"""The boundary loss's CRF image, official preset: bit-equal to the official computation.

The reference below is written from the official code's op order (github hustvl/WeakCLIP,
``dgcnutils.dgcn_crf_operation``), independently of the plugin: the normalised float32 batch
(mmcv ``imnormalize``: ``(x - mean) * (1 / std)`` in float64 stored as float32) →
``scipy.ndimage.zoom(order=1)`` to the 64 × 64 grid → channels last → ``* std`` → ``+ mean``
(mmseg's float32 0..255 arrays) → ``np.ascontiguousarray(dtype=np.uint8)`` (truncation). The loss
reference then follows ``dgcn_softmax`` / ``dgcn_constrain_loss`` step by step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crf_available import HAVE_PYDENSECRF, needs_crf  # noqa: F401 (same folder)

from wsss_kit.crf import dense_crf
from wsss_weakclip.boundary_loss import official_statistics
from wsss_weakclip.losses import CRFBoundaryLoss, crf_boundary_loss, images_for_crf, official_crf_images

scipy_ndimage = pytest.importorskip("scipy.ndimage")

MEAN255 = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # mmseg img_norm_cfg (float32 arrays)
STD255 = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def photos(b, h, w, seed):
    """uint8 RGB ``(B, 3, H, W)``: smooth colour fields plus pixel noise (real images are neither
    constant nor white noise)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (b, 3, 6, 6)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).numpy()
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def mmcv_normalize(u8):
    """mmcv ``imnormalize`` of HWC uint8 images: float32 image, float64 mean and 1/std, float32 result."""
    img = u8.astype(np.float32)
    mean = np.float64(MEAN255.reshape(1, 3, 1, 1))
    stdinv = 1 / np.float64(STD255.reshape(1, 3, 1, 1))
    return ((img - mean) * stdinv).astype(np.float32)


def official_crf_image(normalized, size):
    """``dgcn_crf_operation``'s image, step by step (float32 numpy, scipy's zoom)."""
    h, w = normalized.shape[2:]
    im = scipy_ndimage.zoom(normalized, (1.0, 1.0, float(size) / h, float(size) / w), order=1)
    im = np.transpose(im, [0, 2, 3, 1])
    im = im * STD255[None, None, None, :]
    im = im + MEAN255[None, None, None, :]
    return np.ascontiguousarray(im, dtype=np.uint8)


def official_boundary_loss(logits, image_u8, size):
    """``dgcn_softmax`` + ``dgcn_crf_operation`` + ``dgcn_constrain_loss``: ``logits`` resized to the grid."""
    z = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=size % 2 == 1)
    e = torch.exp(z - z.max(dim=1, keepdim=True)[0])
    probs = e / e.sum(dim=1, keepdim=True) + 1e-7
    probs = probs / probs.sum(dim=1, keepdim=True)
    p = probs.detach().numpy().copy()
    p[p < 0.0001] = 0.0001
    result = np.zeros(p.shape)
    for i in range(p.shape[0]):
        result[i] = dense_crf(image_u8[i], p[i], "weakclip_loss")
    result[result < 0.0001] = 0.0001
    result = np.log(result / result.sum(axis=1, keepdims=True))
    q = torch.exp(torch.from_numpy(result)).float()
    return torch.mean(torch.sum(q * torch.log(torch.clamp(q / probs, 0.05, 20)), dim=1))


def test_official_statistics_are_mmsegs_float32_arrays():
    mean, std = official_statistics()
    assert mean.dtype == np.float32 and np.array_equal(mean, MEAN255)
    assert std.dtype == np.float32 and np.array_equal(std, STD255)
    with pytest.raises(ValueError, match=r"normalization must be \(mean, std\)"):
        official_statistics(((0.5, 0.5), (0.2, 0.2)))


@pytest.mark.parametrize("shape", [(2, 512, 512), (2, 320, 480), (1, 97, 63), (1, 64, 64)])
def test_official_crf_image_is_bit_equal_from_normalised_images(shape):
    b, h, w = shape
    normalized = mmcv_normalize(photos(b, h, w, seed=h))
    expected = official_crf_image(normalized, 64)
    ours = images_for_crf(torch.from_numpy(normalized), 64, input_space="normalized")
    assert ours.dtype == np.uint8 and ours.shape == (b, 64, 64, 3) and ours.flags.c_contiguous
    assert np.array_equal(ours, expected)
    assert np.array_equal(official_crf_images(torch.from_numpy(normalized), 64), expected)


def test_official_crf_image_from_unit_images_uses_the_tensor_the_network_sees():
    u8 = photos(2, 256, 192, seed=3)
    unit = torch.from_numpy(u8).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    seen = ((unit - mean) / std).numpy()  # what WeakCLIP's CLIP normalisation feeds the ViT
    assert np.array_equal(images_for_crf(unit, 64), official_crf_image(seen, 64))


def test_the_rounded_image_differs_from_the_official_one():
    """The regression: rounding the resized [0, 1] image is not the official truncation."""
    u8 = photos(2, 512, 512, seed=7)
    unit = torch.from_numpy(u8).float() / 255
    official = images_for_crf(unit, 64)
    rounded = images_for_crf(unit, 64, crf_image="rounded")
    diff = rounded.astype(int) - official.astype(int)
    assert np.abs(diff).max() == 1 and diff.min() >= 0  # truncation never rounds up
    assert (diff != 0).mean() > 0.2
    normalized = torch.from_numpy(mmcv_normalize(u8))
    assert np.array_equal(images_for_crf(normalized, 64, crf_image="rounded", input_space="normalized"), rounded)


def test_crf_image_bad_arguments():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="crf_image must be one of 'official', 'rounded', got 'round'"):
        images_for_crf(x, 4, crf_image="round")
    with pytest.raises(ValueError, match="input_space must be one of"):
        images_for_crf(x, 4, input_space="imagenet")
    with pytest.raises(ValueError, match="crf_image must be one of"):
        CRFBoundaryLoss(crf_image="truncated")
    with pytest.raises(TypeError, match="normalized images must be float"):
        official_crf_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 4)


@needs_crf
def test_official_boundary_loss_equals_the_official_computation():
    u8 = photos(2, 256, 256, seed=11)
    normalized = torch.from_numpy(mmcv_normalize(u8))
    g = torch.Generator().manual_seed(0)
    logits = F.interpolate(torch.randn(2, 4, 8, 8, generator=g) * 3, size=(64, 64), mode="bilinear")
    expected = official_boundary_loss(logits, official_crf_image(normalized.numpy(), 64), 64)
    loss = crf_boundary_loss(logits, normalized, size=64, workers=0, input_space="normalized")
    assert torch.allclose(loss, expected, rtol=1e-6, atol=0)
    module = CRFBoundaryLoss(size=64, workers=0, input_space="normalized")
    assert torch.allclose(module(logits, normalized), expected, rtol=1e-6, atol=0)
    rounded = crf_boundary_loss(logits, normalized, size=64, workers=0, input_space="normalized",
                                crf_image="rounded")
    assert not torch.allclose(rounded, expected, rtol=1e-6, atol=0)
