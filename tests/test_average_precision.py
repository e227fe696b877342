"""Multi-label average precision (wsss_kit.metrics) and zero-shot scoring (wsss_kit.clip.zero_shot)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wsss_kit.metrics import average_precision, mean_average_precision


def test_ap_hand_computed():
    # ranks 1..4: hit, miss, hit, miss -> AP = 1/2 * 1 + 1/2 * 2/3
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0]))
    assert ap.shape == (1,)
    assert ap[0].item() == pytest.approx(0.5 + 1 / 3)


def test_ap_ties_form_one_threshold():
    # the tie at 0.5 holds one hit and one miss: P = 1/2 at R = 1/2, then P = 2/3 at R = 1
    # (scikit-learn's average_precision_score gives 0.58333 for the same input)
    ap = average_precision(torch.tensor([[0.5], [0.5], [0.1]]), torch.tensor([[1.0], [0.0], [1.0]]))
    assert ap[0].item() == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    # the order of tied items does not matter
    ap2 = average_precision(torch.tensor([[0.5], [0.5], [0.1]]), torch.tensor([[0.0], [1.0], [1.0]]))
    assert ap2[0].item() == pytest.approx(ap[0].item())


def test_ap_per_class_perfect_worst_and_absent():
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.2, 0.2], [0.1, 0.9, 0.1]])
    targets = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    ap = average_precision(scores, targets)
    assert ap[0].item() == 1.0
    assert math.isnan(ap[1].item()) and math.isnan(ap[2].item())  # no positives
    assert mean_average_precision(scores, targets) == 1.0
    worst = average_precision(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0, 0, 1]))
    assert worst[0].item() == pytest.approx(1 / 3)


def test_ap_bad_input_names_what_was_expected():
    with pytest.raises(ValueError, match=r"\(N, K\).*\(3, 2\).*\(3, 1\)"):
        average_precision(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="0/1"):
        average_precision(torch.zeros(3), torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]))


def test_zero_shot_scores_are_cosines_of_encoders():
    from wsss_kit.clip import TINY_CLIP, load_clip, zero_shot_scores

    torch.manual_seed(0)
    clip = load_clip(TINY_CLIP)
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    prompts = ["a photo of a ball.", "a photo of water."]
    scores = zero_shot_scores(clip, images, prompts, batch_size=2)
    assert scores.shape == (5, 2) and scores.dtype == torch.float32
    with torch.no_grad():
        img = F.normalize(clip.encode_image(images.float() / 255.0), dim=-1)
        txt = F.normalize(clip.encode_text(prompts), dim=-1)
    torch.testing.assert_close(scores, img @ txt.T, atol=1e-5, rtol=1e-5)
    assert bool((scores.abs() <= 1 + 1e-5).all())
    with pytest.raises(ValueError, match="prompts"):
        zero_shot_scores(clip, images, [])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        zero_shot_scores(clip, images[:, :1], prompts)
