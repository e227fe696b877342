"""WeakCLIP's CRFs (boundary-loss targets, pseudo masks) through the torch dense-CRF backend give
what the pydensecrf reference gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from crf_available import needs_crf

import wsss_weakclip.boundary_loss as boundary_loss_module
import wsss_weakclip.inference as inference_module
from wsss_weakclip.inference import crf_over_predicted_classes
from wsss_weakclip.losses import CRFBoundaryLoss, crf_boundary_loss, crf_targets, dsrg_probabilities
from wsss_weakclip.refiner import WeakCLIPRefiner

NAMES = ("ball", "box", "kite")


def scene(batch: int, classes: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at 1/4 of the image from 4x4 noise, and images of a disc on a background with a ramp."""
    g = torch.Generator().manual_seed(seed)
    logits = F.interpolate(torch.randn(batch, classes, 4, 4, generator=g) * 3, size=(size // 4, size // 4),
                           mode="bilinear")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    colours = torch.rand(batch, 2, 3, generator=g)
    inside = ((xx - 0.4) ** 2 + (yy - 0.6) ** 2 < 0.08).float()
    images = colours[:, 0, :, None, None] * inside + colours[:, 1, :, None, None] * (1 - inside)
    return logits, (0.8 * images + 0.2 * xx).clamp(0, 1)


def no_pydensecrf_path(monkeypatch):
    """Make the pydensecrf path fail, so that a passing torch-backend call proves it took the torch path."""
    def refuse(*args, **kwargs):
        raise AssertionError("the pydensecrf backend ran")

    for module in (boundary_loss_module, inference_module):
        monkeypatch.setattr(module, "dense_crf_batch", refuse)


@needs_crf
def test_boundary_loss_targets_and_loss_equal_the_reference_with_the_torch_backend(monkeypatch):
    logits, images = scene(3, 5, size=64, seed=1)
    probs = dsrg_probabilities(logits, 16)
    ref = crf_targets(probs, images, workers=0)
    ref_loss = crf_boundary_loss(logits, images, size=16, workers=0)
    no_pydensecrf_path(monkeypatch)
    out = crf_targets(probs, images, backend="torch")
    assert out.shape == ref.shape == (3, 5, 16, 16) and out.dtype == ref.dtype == torch.float32
    assert (out - ref).abs().max() < 1e-4
    logits.requires_grad_(True)
    loss = crf_boundary_loss(logits, images, size=16, backend="torch")
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=0)
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0
    module = CRFBoundaryLoss(size=16, backend="torch")
    torch.testing.assert_close(module(logits, images), loss)
    assert "backend='torch'" in repr(module)


def test_unknown_backend_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown dense CRF backend 'cuda'; valid backends: pydensecrf, torch, auto"):
        CRFBoundaryLoss(backend="cuda")
    with pytest.raises(ValueError, match="unknown dense CRF backend 'cuda'"):
        WeakCLIPRefiner(class_names=NAMES, clip_model="wsss-tiny-clip", clip_weights=None, crf_backend="cuda")


@needs_crf
def test_pseudo_mask_crf_over_the_argmax_classes_equals_the_reference(monkeypatch):
    probs = torch.zeros(2, 4, 32, 32)
    probs[:, 0] = 0.5
    probs[:, 2, :, :16] = 0.6
    probs[1, 1, 20:, 20:] = 0.9
    probs[:, 3] = 0.1  # never wins: dropped
    probs = probs / probs.sum(1, keepdim=True)
    _, images = scene(2, 4, size=32, seed=2)
    ref = crf_over_predicted_classes(probs, images, "weakclip_voc", workers=0)
    no_pydensecrf_path(monkeypatch)
    out = crf_over_predicted_classes(probs, images, "weakclip_voc", backend="torch")
    assert torch.all(out[:, 3] == 0) and torch.all(out[0, 1] == 0)
    assert (out - ref).abs().max() < 1e-4


@needs_crf
def test_refiner_crf_backend_reaches_the_pseudo_masks(monkeypatch):
    kwargs = dict(class_names=NAMES, clip_model="wsss-tiny-clip", clip_weights=None, n_context=2, scales=(1.0,),
                  base_size=None, flip=False, crf="weakclip_voc", crf_workers=0)
    torch.manual_seed(0)
    reference = WeakCLIPRefiner(**kwargs)
    torch.manual_seed(0)
    batched = WeakCLIPRefiner(**kwargs, crf_backend="torch")
    _, images = scene(2, 4, size=48, seed=3)
    ref = reference.refine(images, None, None)
    no_pydensecrf_path(monkeypatch)
    out = batched.refine(images, None, None)
    assert out.shape == ref.shape == (2, 4, 48, 48)
    assert (out - ref).abs().max() < 1e-4
