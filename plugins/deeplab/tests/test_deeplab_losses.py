"""losses/cross_entropy and losses/deeplab_msc (the DeepLabV2 multi-scale sum)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_deeplab import CrossEntropyLoss, MSCLoss, balanced_ce_loss, cross_entropy_loss, msc_loss
from wsss_deeplab.losses import resize_target
from wsss_kit.config import build


def test_cross_entropy_matches_torch_and_upsamples_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 10))
    target[0, :2] = 255
    up = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(cross_entropy_loss(logits, target), F.cross_entropy(up, target, ignore_index=255))
    assert torch.equal(CrossEntropyLoss()(logits, target), cross_entropy_loss(logits, target))


def test_cross_entropy_hand_computed_two_by_two():
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]]])  # (1, 2, 2, 2)
    target = torch.tensor([[[0, 1], [1, 255]]])
    expected = (-torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
                - torch.log_softmax(torch.tensor([0.0, 0.0]), 0)[1]
                - torch.log_softmax(torch.tensor([0.0, 1.0]), 0)[1]) / 3
    assert torch.allclose(cross_entropy_loss(logits, target), expected)


def test_all_ignored_gives_an_attached_zero():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = cross_entropy_loss(logits, torch.full((1, 3, 3), 255))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_resize_target_is_pil_nearest():
    target = torch.arange(6 * 4).view(1, 6, 4)
    small = resize_target(target, (3, 2))
    # PIL NEAREST samples the source pixel under each output pixel's centre: rows 1, 3, 5; cols 1, 3
    assert torch.equal(small, target[:, 1::2, 1::2])
    assert resize_target(target, (6, 4)) is target


def test_msc_loss_sums_the_outputs_against_resized_targets():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 16, 12))
    outs = [torch.randn(2, 3, 8, 6), torch.randn(2, 3, 4, 3), torch.randn(2, 3, 8, 6)]
    expected = sum(F.cross_entropy(o, resize_target(target, o.shape[-2:]), ignore_index=255) for o in outs)
    assert torch.allclose(msc_loss(outs, target), expected)
    single = torch.randn(2, 3, 16, 12)
    assert torch.allclose(msc_loss(single, target), cross_entropy_loss(single, target))
    balanced = MSCLoss(loss=wsss_kit.create("losses", "balanced_ce"))
    assert torch.allclose(balanced(outs, target), sum(balanced_ce_loss(o, resize_target(target, o.shape[-2:]))
                                                      for o in outs))


def test_msc_loss_builds_from_a_nested_config_node():
    loss = build({"type": "losses/deeplab_msc", "loss": {"type": "losses/balanced_ce"}}, "head.loss")
    assert isinstance(loss, MSCLoss) and type(loss.loss).__name__ == "BalancedCELoss"
    assert isinstance(build({"type": "losses/deeplab_msc"}, "head.loss").loss, CrossEntropyLoss)


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="deeplab_msc"):
        cross_entropy_loss([torch.randn(1, 2, 3, 3)], torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="outside 0..1"):
        cross_entropy_loss(torch.randn(1, 2, 3, 3), torch.full((1, 3, 3), 2))
    with pytest.raises(TypeError, match="non-empty list"):
        msc_loss([], torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits\[1\]"):
        msc_loss([torch.randn(1, 2, 3, 3), torch.randn(2, 3)], torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="callable"):
        MSCLoss(loss=3)


def test_foreground_balance_is_clims_criterion_balance():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5)
    target = torch.randint(0, 4, (2, 6, 5))
    target[1, 0] = 255
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    bg, fg = (target == 0).float(), ((target != 0) & (target != 255)).float()
    official = ((ce * bg).sum() / bg.sum() + (ce * fg).sum() / fg.sum()) / 2
    assert torch.allclose(balanced_ce_loss(logits, target, balance="foreground"), official)
    loss = wsss_kit.create("losses", "balanced_ce", balance="foreground")
    assert torch.allclose(loss(logits, target), official)
    only_bg = torch.zeros(2, 6, 5, dtype=torch.long)  # the official code gives NaN here
    assert torch.allclose(balanced_ce_loss(logits, only_bg, balance="foreground"),
                          F.cross_entropy(logits, only_bg))
    with pytest.raises(ValueError, match="balance"):
        balanced_ce_loss(logits, target, balance="pixels")
