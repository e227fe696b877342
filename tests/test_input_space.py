"""wsss_kit.input_space: the unit / normalized switch and the one normalisation conversion."""

from __future__ import annotations

import pytest
import torch

from wsss_kit.clip import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from wsss_kit.input_space import (
    INPUT_SPACES,
    check_input_space,
    convert_normalization,
    normalize_input,
    to_unit,
)


def test_choices_and_bad_value_lists_them() -> None:
    assert INPUT_SPACES == ("unit", "normalized")
    assert check_input_space("unit") == "unit"
    with pytest.raises(ValueError, match=r"input_space must be one of 'unit', 'normalized'.*'normalised'"):
        check_input_space("normalised")
    with pytest.raises(ValueError, match=r"my_arg must be one of"):
        check_input_space(None, "my_arg")


def test_hand_computed_2x2() -> None:
    images = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]] * 3])  # (1, 3, 2, 2)
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    x = normalize_input(images, "unit", mean, std)
    assert torch.allclose(x[0, 0], torch.tensor([[-1.0, 1.0], [0.0, -0.5]]))
    assert torch.allclose(x[0, 1], torch.tensor([[-1.0, 3.0], [1.0, 0.0]]))
    assert torch.allclose(x[0, 2], torch.tensor([[0.0, 0.5], [0.25, 0.125]]))
    assert normalize_input(x, "normalized", mean, std) is x
    assert torch.allclose(to_unit(x, "normalized", mean, std), images)
    assert to_unit(images, "unit", mean, std) is images


def test_convert_normalization_equals_unnormalise_then_renormalise() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    imagenet = normalize_input(images, "unit", IMAGENET_MEAN, IMAGENET_STD)
    clip = normalize_input(images, "unit", CLIP_MEAN, CLIP_STD)
    got = convert_normalization(imagenet, (IMAGENET_MEAN, IMAGENET_STD), (CLIP_MEAN, CLIP_STD))
    assert got.dtype == torch.float64
    assert torch.allclose(got, clip, atol=1e-12)
    assert torch.allclose(convert_normalization(imagenet, (IMAGENET_MEAN, IMAGENET_STD), None), images)
    assert torch.allclose(convert_normalization(images, None, (CLIP_MEAN, CLIP_STD)), clip)
    assert convert_normalization(images, None, None) is images
    # tensors of shape (1, 3, 1, 1), as CAM networks hold them in buffers
    mean_t = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std_t = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(convert_normalization(imagenet.float(), (mean_t, std_t), None), images.float(), atol=1e-6)


def test_gradient_flows() -> None:
    images = torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: convert_normalization(x, (IMAGENET_MEAN, IMAGENET_STD), (CLIP_MEAN, CLIP_STD)), (images,))


def test_bad_images_and_stats() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        normalize_input(torch.rand(3, 4, 4), "unit", IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize_input(torch.rand(1, 3, 4, 4), "unit", (0.5, 0.5), (1.0, 1.0))
    with pytest.raises(ValueError, match="input_space must be one of"):
        to_unit(torch.rand(1, 3, 4, 4), "imagenet", IMAGENET_MEAN, IMAGENET_STD)
