"""balanced_ce_loss / BalancedCELoss: hand-computed case, ignore handling, resizing, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wsss_deeplab import BalancedCELoss, balanced_ce_loss


def tiny_case() -> tuple[torch.Tensor, torch.Tensor]:
    # 1 image, 2 classes, 1x3 pixels; logits per pixel (class 0, class 1)
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]).view(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 1]]])
    return logits, target


def test_hand_computed_tiny_case():
    logits, target = tiny_case()
    ce = [math.log(2.0), math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(-2.0))]
    # class 0: mean of its two pixels; class 1: its one pixel; then the mean of the two classes
    expected = ((ce[0] + ce[1]) / 2 + ce[2]) / 2
    assert balanced_ce_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    assert BalancedCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # plain cross-entropy weighs pixels, not classes
    assert F.cross_entropy(logits, target).item() == pytest.approx(sum(ce) / 3, rel=1e-6)


def test_equals_plain_cross_entropy_when_classes_are_equally_large():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 6)
    target = torch.arange(3).repeat_interleave(16).view(2, 4, 6)  # 16 pixels per class
    assert torch.allclose(balanced_ce_loss(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_small_object_weighs_as_much_as_the_background():
    logits = torch.zeros(1, 2, 10, 10)
    logits[:, 0] = 3.0  # confident background everywhere
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, 0] = 1  # a one-pixel object, misclassified
    ce_object = math.log(1 + math.exp(3.0))
    ce_background = math.log(1 + math.exp(-3.0))
    assert balanced_ce_loss(logits, target).item() == pytest.approx((ce_object + ce_background) / 2, rel=1e-5)
    assert F.cross_entropy(logits, target).item() < 0.1 * balanced_ce_loss(logits, target).item()


def test_ignored_pixels_do_not_count():
    logits, target = tiny_case()
    with_ignored = torch.cat([logits, torch.randn(1, 2, 1, 2) * 10], dim=3)
    ignored_target = torch.cat([target, torch.full((1, 1, 2), 255)], dim=2)
    assert torch.allclose(balanced_ce_loss(with_ignored, ignored_target), balanced_ce_loss(logits, target))
    other = torch.cat([target, torch.full((1, 1, 2), 7)], dim=2)
    assert torch.allclose(balanced_ce_loss(with_ignored, other, ignore_index=7), balanced_ce_loss(logits, target))


def test_all_ignored_gives_zero_with_a_graph():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = balanced_ce_loss(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_logits_are_resized_to_the_target():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, :2] = 255
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(balanced_ce_loss(logits, target), balanced_ce_loss(up, target))


def test_gradcheck_float64():
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 3, 3))
    target[1, 0] = 255
    assert torch.autograd.gradcheck(lambda x: balanced_ce_loss(x, target), (logits,))
    small = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: balanced_ce_loss(x, target[:1]), (small,))  # with resize


def test_bad_inputs_raise_clear_errors():
    logits = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"logits must be \(B, K, H, W\)"):
        balanced_ce_loss(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target must be \(B, H, W\) with B = 2"):
        balanced_ce_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="int64"):
        balanced_ce_loss(logits, torch.zeros(2, 4, 4))
    bad = torch.zeros(2, 4, 4, dtype=torch.long)
    bad[1, 2, 3] = 5
    with pytest.raises(ValueError, match=r"class 5, outside 0\.\.2"):
        balanced_ce_loss(logits, bad)
