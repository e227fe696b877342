"""WeakCLIP losses: hand-computed cases, ignore handling, official resizing, gradcheck, CRF pool == serial, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crf_available import HAVE_PYDENSECRF, needs_crf  # noqa: F401 (same folder)

from wsss_kit.crf import PARAM_SETS, CRFPool, dense_crf
from wsss_weakclip.losses import (
    BalancedSeedLoss,
    CRFBoundaryLoss,
    ScoreMapLoss,
    balanced_seed_loss,
    boundary_loss_from_crf,
    crf_boundary_loss,
    crf_targets,
    dsrg_probabilities,
    images_for_crf,
    score_map_loss,
    seed_cues,
)


def renorm(p: float, q: float) -> tuple[float, float]:
    """The official probabilities of a 2-class pixel: (softmax + 1e-7) renormalised."""
    return (p + 1e-7) / (1 + 2e-7), (q + 1e-7) / (1 + 2e-7)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------
# balanced seeding loss (Eq. 12)


def seed_case() -> tuple[torch.Tensor, torch.Tensor]:
    """2 images, 2 classes, 2x2 pixels. Image 0 has both cue kinds and an ignored pixel; image 1
    background cues only."""
    logits = torch.zeros(2, 2, 2, 2)
    logits[0, 0] = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logits[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    seeds = torch.tensor([[[0, 1], [255, 1]], [[0, 0], [0, 0]]])
    return logits, seeds


def test_seed_loss_hand_computed():
    logits, seeds = seed_case()
    # image 0: background cue at (0,0) where softmax = (1/2, 1/2); foreground cues at (0,1)
    # (logits 1, 0 -> P1 = 1 - sigmoid(1)) and (1,1) (logits 0, 3 -> P1 = sigmoid(3)).
    bg0 = -math.log(renorm(0.5, 0.5)[0]) / 1
    fg0 = -(math.log(renorm(sigmoid(1), 1 - sigmoid(1))[1]) + math.log(renorm(1 - sigmoid(3), sigmoid(3))[1])) / 2
    # image 1: four background cues at P0 = 1/2; no foreground cue: 0 / max(0, 1e-4) = 0
    bg1 = -4 * math.log(renorm(0.5, 0.5)[0]) / 4
    fg1 = 0.0
    expected = (bg0 + bg1) / 2 + (fg0 + fg1) / 2
    assert balanced_seed_loss(logits, seeds, size=2).item() == pytest.approx(expected, rel=1e-6)
    assert BalancedSeedLoss(size=2)(logits, seeds).item() == pytest.approx(expected, rel=1e-6)


def test_seed_loss_terms_are_normalised_separately():
    # one background cue and nine foreground cues, each with -log P = c: each term is c, total 2c
    logits = torch.zeros(1, 2, 10, 1)
    seeds = torch.ones(1, 10, 1, dtype=torch.long)
    seeds[0, 0, 0] = 0
    c = -math.log(renorm(0.5, 0.5)[0])
    assert balanced_seed_loss(logits, seeds, size=10).item() == pytest.approx(2 * c, rel=1e-6)


def test_seed_loss_ignores_255_pixels():
    logits, seeds = seed_case()
    changed = logits.clone()
    changed[0, :, 1, 0] = torch.tensor([-50.0, 40.0])  # the ignored pixel
    assert torch.equal(balanced_seed_loss(changed, seeds, size=2), balanced_seed_loss(logits, seeds, size=2))
    all_ignored = torch.full_like(seeds, 255)
    logits = logits.clone().requires_grad_(True)
    loss = balanced_seed_loss(logits, all_ignored, size=2)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_seed_loss_official_resizing():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    seeds = torch.randint(0, 3, (2, 16, 16))
    seeds[:, :3] = 255
    # logits: bilinear, align_corners=False for an even grid; seeds: nearest = every 4th pixel
    probs = torch.softmax(F.interpolate(logits, size=(4, 4), mode="bilinear", align_corners=False), 1) + 1e-7
    probs = probs / probs.sum(1, keepdim=True)
    assert torch.allclose(dsrg_probabilities(logits, 4), probs)
    cues = seed_cues(seeds, 3, 4)
    small = seeds[:, ::4, ::4]
    expected_cues = F.one_hot(small.clamp(max=2), 3).permute(0, 3, 1, 2).float() * (small != 255)[:, None]
    assert torch.equal(cues, expected_cues)
    # an odd grid uses align_corners=True (the official rule)
    odd = torch.softmax(F.interpolate(logits, size=(5, 5), mode="bilinear", align_corners=True), 1)
    assert torch.allclose(dsrg_probabilities(logits, 5), (odd + 1e-7) / (1 + 3e-7), atol=1e-7)


def test_seed_loss_gradcheck_float64():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    seeds = torch.randint(0, 3, (2, 8, 8))
    seeds[0, :2] = 255
    assert torch.autograd.gradcheck(lambda x: balanced_seed_loss(x, seeds, size=4), (logits,))
    assert torch.autograd.gradcheck(lambda x: balanced_seed_loss(x, seeds, size=3), (logits,))
    assert balanced_seed_loss(logits, seeds, size=4).dtype == torch.float64


def test_seed_loss_half_precision_logits_give_float32():
    logits, seeds = seed_case()
    loss = balanced_seed_loss(logits.bfloat16(), seeds, size=2)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(balanced_seed_loss(logits, seeds, size=2).item(), rel=1e-2)


def test_seed_loss_bad_inputs():
    logits = torch.zeros(2, 3, 8, 8)
    seeds = torch.zeros(2, 32, 32, dtype=torch.long)
    with pytest.raises(ValueError, match=r"seed mask is 32×64 but the logits are 8×8"):
        balanced_seed_loss(logits, torch.zeros(2, 32, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"class id 3, outside 0\.\.2"):
        balanced_seed_loss(logits, seeds.index_fill(1, torch.tensor([5]), 3))
    with pytest.raises(ValueError, match="class id -1"):
        balanced_seed_loss(logits, seeds - 1)
    with pytest.raises(ValueError, match="seeds hold 1 masks but the logits hold 2"):
        balanced_seed_loss(logits, seeds[:1])
    with pytest.raises(TypeError, match="integer class ids"):
        balanced_seed_loss(logits, seeds.float())
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        balanced_seed_loss(logits, seeds[:, None])
    with pytest.raises(ValueError, match=r"\(B, K, h, w\)"):
        balanced_seed_loss(logits[0], seeds)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        BalancedSeedLoss(size=0)
    # 255 is the ignore value, not a class
    balanced_seed_loss(logits, seeds.index_fill(1, torch.tensor([5]), 255))


# ---------------------------------------------------------------------------------------------
# score-map auxiliary cross-entropy


def test_score_map_loss_hand_computed():
    score_map = torch.tensor([0.7, 0.0]).view(1, 2, 1, 1)  # / 0.07 -> logits (10, 0) everywhere
    seeds = torch.tensor([[[0, 1], [255, 0]]])
    ce0 = math.log(1 + math.exp(-10.0))
    ce1 = 10.0 + math.log(1 + math.exp(-10.0))
    # official (mmseg 0.x default): mean over all 4 pixels, the ignored one counting 0
    assert score_map_loss(score_map, seeds).item() == pytest.approx((2 * ce0 + ce1) / 4, rel=1e-5)
    assert score_map_loss(score_map, seeds, average="valid").item() == pytest.approx((2 * ce0 + ce1) / 3, rel=1e-5)
    assert ScoreMapLoss()(score_map, seeds).item() == pytest.approx((2 * ce0 + ce1) / 4, rel=1e-5)
    # temperature 1: logits (0.7, 0)
    ce0_t1 = math.log(1 + math.exp(-0.7))
    ce1_t1 = 0.7 + math.log(1 + math.exp(-0.7))
    assert score_map_loss(score_map, seeds, temperature=1.0).item() == pytest.approx(
        (2 * ce0_t1 + ce1_t1) / 4, rel=1e-5
    )


def test_score_map_loss_upsamples_bilinear_and_ignores():
    torch.manual_seed(0)
    score_map = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    seeds = torch.randint(0, 3, (2, 64, 64))
    seeds[1, 10:] = 255
    up = F.interpolate(score_map / 0.07, size=(64, 64), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, seeds, ignore_index=255, reduction="sum") / seeds.numel()
    assert torch.allclose(score_map_loss(score_map, seeds), expected)
    valid_mean = F.cross_entropy(up, seeds, ignore_index=255)
    assert torch.allclose(score_map_loss(score_map, seeds, average="valid"), valid_mean)
    assert torch.autograd.gradcheck(lambda x: score_map_loss(x, seeds[:, ::8, ::8]), (score_map,))
    all_ignored = score_map_loss(score_map, torch.full_like(seeds, 255), average="valid")
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad


def test_score_map_loss_bad_inputs():
    score_map = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"seed mask is 64×32 but the score map is 4×4"):
        score_map_loss(score_map, torch.zeros(1, 64, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="class id 2"):
        score_map_loss(score_map, torch.full((1, 64, 64), 2))
    with pytest.raises(ValueError, match="temperature"):
        ScoreMapLoss(temperature=0)
    with pytest.raises(ValueError, match="average"):
        score_map_loss(score_map, torch.zeros(1, 64, 64, dtype=torch.long), average="mean")


# ---------------------------------------------------------------------------------------------
# boundary loss (Eq. 13)


def test_boundary_loss_from_crf_hand_computed():
    p0 = torch.tensor([[0.5, 0.9], [0.2, 0.999]], dtype=torch.float64)
    q0 = torch.tensor([[0.5, 0.6], [0.2, 0.01]], dtype=torch.float64)
    probs = torch.stack([p0, 1 - p0])[None].requires_grad_(True)
    crf = torch.stack([q0, 1 - q0])[None]
    # pixels (0,0) and (1,0): Q = P -> 0. Pixel (0,1): no clamp. Pixel (1,1): Q0/P0 = 0.01 -> 0.05
    # and Q1/P1 = 990 -> 20 (both clamped).
    terms = [
        0.0,
        0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1),
        0.0,
        0.01 * math.log(0.05) + 0.99 * math.log(20),
    ]
    loss = boundary_loss_from_crf(probs, crf)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-12)
    loss.backward()
    # d/dP of Q log(Q/P) = -Q/P (over the 4 pixels); no gradient where the ratio is clamped
    expected = torch.zeros_like(probs)
    expected[0, 0] = -(torch.stack([q0, 1 - q0])[0] / p0) / 4
    expected[0, 1] = -(torch.stack([q0, 1 - q0])[1] / (1 - p0)) / 4
    expected[0, :, 1, 1] = 0
    assert torch.allclose(probs.grad, expected)


def test_boundary_loss_gradcheck_float64_with_q_fixed():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():  # a Q near P: every ratio inside (0.05, 20), away from the clamp's kinks
        q = dsrg_probabilities(logits, 4) * (1 + 0.3 * torch.rand(2, 3, 4, 4, dtype=torch.float64))
        q = q / q.sum(1, keepdim=True)
    assert torch.autograd.gradcheck(lambda x: boundary_loss_from_crf(dsrg_probabilities(x, 4), q), (logits,))


def smooth_batch(batch: int, classes: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-like inputs (smooth, structured; a CRF on noise is unrepresentative): logits at 1/4
    of the image, upsampled from 4x4 noise; images with two colour regions and a gradient."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, classes, 4, 4, generator=g) * 3
    logits = F.interpolate(noise, size=(size // 4, size // 4), mode="bilinear")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    colours = torch.rand(batch, 2, 3, generator=g)
    inside = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).float()
    images = colours[:, 0, :, None, None] * inside + colours[:, 1, :, None, None] * (1 - inside)
    return logits, (0.8 * images + 0.2 * xx).clamp(0, 1)


def test_weakclip_loss_crf_parameters_are_the_official_ones():
    # official dgcnutils.crf_inference: t=10, Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10
    assert PARAM_SETS["weakclip_loss"].as_tuple() == (3.0, 3.0, 80.0, 13.0, 10.0, 10)


def test_images_for_crf_corner_aligned_uint8():
    images = torch.rand(1, 3, 9, 9)
    out = images_for_crf(images, 5, crf_image="rounded")
    assert out.dtype == np.uint8 and out.shape == (1, 5, 5, 3) and out.flags.c_contiguous
    # align_corners=True: every other source pixel is hit exactly (9 -> 5)
    expected = (images[0, :, ::2, ::2] * 255).round().permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.array_equal(out[0], expected)


@needs_crf
def test_crf_targets_match_a_direct_dense_crf_over_all_classes():
    logits, images = smooth_batch(2, 4, size=32)
    probs = dsrg_probabilities(logits, 8)
    q = crf_targets(probs, images, workers=0)
    assert q.shape == (2, 4, 8, 8) and q.dtype == torch.float32
    images_u8 = images_for_crf(images, 8)
    for b in range(2):
        p = probs[b].clamp_min(1e-4).numpy()  # every channel, not only the image's classes
        ref = np.maximum(dense_crf(images_u8[b], p, "weakclip_loss"), 1e-4).astype(np.float64)
        ref /= ref.sum(0, keepdims=True)
        assert np.allclose(q[b].numpy(), ref, atol=1e-7)
    assert torch.allclose(q.sum(1), torch.ones(2, 8, 8))
    assert (q > 0).all()


@needs_crf
def test_crf_parallel_equals_serial_exactly(monkeypatch):
    import wsss_kit.crf.pool as crf_pool

    logits, images = smooth_batch(3, 5, size=64, seed=1)
    probs = dsrg_probabilities(logits, 16)
    serial = crf_targets(probs, images, workers=0)
    used = []
    real_shared_pool = crf_pool.shared_pool
    monkeypatch.setattr(crf_pool, "shared_pool", lambda n: used.append(n) or real_shared_pool(n))
    parallel = crf_targets(probs, images, workers=2)
    assert used == [2], "the batch's CRFs must run in worker processes"
    assert torch.equal(serial, parallel)
    with CRFPool(2) as pool:
        assert torch.equal(serial, crf_targets(probs, images, pool=pool))
    loss_serial = crf_boundary_loss(logits, images, size=16, workers=0)
    loss_parallel = crf_boundary_loss(logits, images, size=16, workers=2)
    assert torch.equal(loss_serial, loss_parallel)


@needs_crf
def test_crf_boundary_loss_composes_and_backpropagates_to_logits_only():
    logits, images = smooth_batch(2, 3, size=32, seed=2)
    logits.requires_grad_(True)
    images.requires_grad_(True)
    loss = crf_boundary_loss(logits, images, size=8, workers=0)
    with torch.no_grad():
        probs = dsrg_probabilities(logits, 8)
        expected = boundary_loss_from_crf(probs, crf_targets(probs, images, workers=0))
    assert torch.allclose(loss, expected)
    assert loss.item() >= 0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
    assert images.grad is None
    module = CRFBoundaryLoss(size=8, workers=0)
    assert module.wsss_api_version == "1.0"
    assert torch.allclose(module(logits, images), loss)
    assert "bilateral=(80, 13, 10)" in repr(module) and "iterations=10" in repr(module)


@needs_crf
def test_crf_boundary_loss_half_precision_logits():
    logits, images = smooth_batch(1, 3, size=32, seed=3)
    loss = crf_boundary_loss(logits.bfloat16(), images, size=8, workers=0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_crf_boundary_loss_bad_inputs():
    logits = torch.zeros(2, 3, 8, 8)
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"the image is 32×64 but the logits are 8×8"):
        crf_boundary_loss(logits, torch.rand(2, 3, 32, 64))
    with pytest.raises(ValueError, match="images hold 1 images but the logits hold 2"):
        crf_boundary_loss(logits, images[:1])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        crf_boundary_loss(logits, images[:, :1])
    with pytest.raises(ValueError, match="workers must be"):
        crf_boundary_loss(logits, images, workers=-1)
    with pytest.raises(ValueError, match="workers must be"):
        CRFBoundaryLoss(workers="many")
    with pytest.raises(ValueError, match="unknown CRF parameter set 'weakclip_los'"):
        CRFBoundaryLoss(params="weakclip_los")
    with pytest.raises(ValueError, match="same shape"):
        boundary_loss_from_crf(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))


def test_modules_declare_the_api_version():
    for cls in (BalancedSeedLoss, CRFBoundaryLoss, ScoreMapLoss):
        assert cls.wsss_api_version == "1.0"


def test_refiner_crf_workers_are_checked_when_built():
    from wsss_weakclip.refiner import WeakCLIPRefiner

    with pytest.raises(ValueError, match=r"crf_workers must be an integer >= 0 .* got 'two'"):
        WeakCLIPRefiner(class_names=("cat", "dog"), clip_model="wsss-tiny-clip", clip_weights=None, crf_workers="two")
