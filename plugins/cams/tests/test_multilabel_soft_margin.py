"""multilabel_soft_margin_loss / MultiLabelSoftMarginLoss against torch and a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wsss_cams import MultiLabelSoftMarginLoss, multilabel_soft_margin_loss


def test_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(5, 7) * 3
    labels = (torch.rand(5, 7) > 0.5).float()
    ours = multilabel_soft_margin_loss(logits, labels)
    assert torch.allclose(ours, F.multilabel_soft_margin_loss(logits, labels), atol=1e-6)
    per_image = multilabel_soft_margin_loss(logits, labels, reduction="none")
    assert per_image.shape == (5,)
    assert torch.allclose(per_image, F.multilabel_soft_margin_loss(logits, labels, reduction="none"), atol=1e-6)
    assert torch.allclose(multilabel_soft_margin_loss(logits, labels, reduction="sum"), per_image.sum())


def test_hand_computed_two_class_case():
    # one image, class 0 present with logit 2, class 1 absent with logit -1:
    # loss = -(log sigmoid(2) + log(1 - sigmoid(-1))) / 2
    logits = torch.tensor([[2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0]])
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    expected = -(math.log(sig(2.0)) + math.log(1.0 - sig(-1.0))) / 2
    assert multilabel_soft_margin_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert MultiLabelSoftMarginLoss()(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_stable_for_extreme_logits():
    logits = torch.tensor([[200.0, -200.0]], requires_grad=True)
    loss = multilabel_soft_margin_loss(logits, torch.tensor([[0.0, 1.0]]))
    assert loss.item() == pytest.approx(200.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_gradcheck_float64():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: multilabel_soft_margin_loss(x, labels), (logits,))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"logits must be \(B, C\)"):
        multilabel_soft_margin_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"labels must have the logits' shape \(2, 3\).*\(2, 4\)"):
        multilabel_soft_margin_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        multilabel_soft_margin_loss(torch.zeros(2, 3), torch.zeros(2, 3), reduction="max")
    with pytest.raises(ValueError, match="reduction"):
        MultiLabelSoftMarginLoss(reduction="avg")
    with pytest.raises(TypeError, match="tensors"):
        multilabel_soft_margin_loss([[0.0]], torch.zeros(1, 1))
