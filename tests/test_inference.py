"""wsss_kit.inference.predict_multiscale: multi-scale + flip test-time inference with mean/max and CRF."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_kit.errors import ConfigError
from wsss_kit.inference import predict_multiscale


class TinyHead(nn.Module):
    """A 3×3 conv over the image, then the retrain-head contract: logits at the input size."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ScaleAware(nn.Module):
    """Logits that depend on the input size: class 0 at 1/2 resolution, class 1 otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = float(x.shape[-1] >= 8)
        out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        out[:, 1] = 2.0 * big
        out[:, 0] = 2.0 * (1 - big)
        return out


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 9, 12)


def test_scale_one_equals_the_direct_forward(images):
    model = TinyHead().eval()
    got = predict_multiscale(model, images)
    assert got.shape == (2, 3, 9, 12) and got.dtype == torch.float32
    assert torch.allclose(got, model(images).softmax(1), atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(2, 9, 12), atol=1e-5)


def test_flip_averages_the_mirrored_pass(images):
    model = TinyHead().eval()
    got = predict_multiscale(model, images, flip=True)
    expected = (model(images).softmax(1) + model(images.flip(-1)).flip(-1).softmax(1)) / 2
    assert torch.allclose(got, expected, atol=1e-6)
    # flip symmetry: mirroring the image mirrors the prediction
    mirrored = predict_multiscale(model, images.flip(-1), flip=True)
    assert torch.allclose(mirrored, got.flip(-1), atol=1e-6)


def test_mean_and_max_over_scales_by_hand():
    images = torch.rand(1, 3, 8, 10)
    model = ScaleAware()
    p_small = torch.softmax(torch.tensor([2.0, 0.0]), 0)  # at scale 0.5 (width 5 < 8)
    p_big = torch.softmax(torch.tensor([0.0, 2.0]), 0)
    mean = predict_multiscale(model, images, scales=(0.5, 1.0), aggregate="mean")
    mx = predict_multiscale(model, images, scales=(0.5, 1.0), aggregate="max")
    assert torch.allclose(mean[0, :, 3, 4], (p_small + p_big) / 2, atol=1e-6)
    assert torch.allclose(mx[0, :, 3, 4], torch.maximum(p_small, p_big), atol=1e-6)
    assert (mx >= mean - 1e-7).all()


def test_scales_use_the_official_sizes_and_align_corners(images):
    seen = []

    class Record(TinyHead):
        def forward(self, x):
            seen.append(x)
            return super().forward(x)

    model = Record().eval()
    predict_multiscale(model, images, scales=(0.75,), resize_align_corners=True)
    assert seen[-1].shape[-2:] == (int(9 * 0.75), int(12 * 0.75))
    assert torch.allclose(seen[-1], F.interpolate(images, size=(6, 9), mode="bilinear", align_corners=True))


def test_crf_changes_only_the_island_that_disagrees_with_the_image():
    pytest.importorskip("pydensecrf")
    h, w = 24, 32
    image = torch.zeros(1, 3, h, w)
    image[0, 0, :, : w // 2] = 1.0  # left half red
    image[0, 2, :, w // 2:] = 1.0  # right half blue
    logits = torch.zeros(1, 2, h, w)
    logits[0, 0, :, : w // 2] = 3.0
    logits[0, 1, :, w // 2:] = 3.0
    logits[0, 1, 8:11, 4:7] = 3.2  # a weak, wrong island inside the red half
    logits[0, 0, 8:11, 4:7] = 3.0

    class Fixed(nn.Module):
        def forward(self, x):
            return logits.expand(x.shape[0], -1, -1, -1)

    plain = predict_multiscale(Fixed(), image).argmax(1)
    refined = predict_multiscale(Fixed(), image, crf="mctformer_seg", crf_workers=0)
    assert refined.shape == (1, 2, h, w)
    assert torch.allclose(refined.sum(1), torch.ones(1, h, w), atol=1e-4)
    changed = refined.argmax(1) != plain
    island = torch.zeros(1, h, w, dtype=torch.bool)
    island[0, 8:11, 4:7] = True
    assert changed[island].all(), "the CRF should relabel the island to the surrounding class"
    assert not changed[~island].any(), "the CRF must leave pixels that agree with the image alone"


def test_bad_inputs_raise(images):
    model = TinyHead().eval()
    with pytest.raises(ValueError, match="aggregate"):
        predict_multiscale(model, images, aggregate="median")
    with pytest.raises(ValueError, match="scales"):
        predict_multiscale(model, images, scales=())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        predict_multiscale(model, images[:, :2])
    with pytest.raises(ConfigError, match="unknown CRF parameter set"):
        predict_multiscale(model, images, crf="mctformer_sg")

    class ListInTraining(nn.Module):
        def forward(self, x):
            return [x, x]

    with pytest.raises(ValueError, match="eval mode"):
        predict_multiscale(ListInTraining(), images)
