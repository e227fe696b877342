"""Tests for wsss_kit.cam_ops: multi-scale/flip CAM aggregation, masking and normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss_kit.cam_ops import multiscale_cams, normalize_cams, resize_cams


def horizontal_ramp(images: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """raw_fn whose class-c map is (c + 1) * column index: not mirror-symmetric."""
    b, _, h, w = images.shape
    cols = torch.arange(w, dtype=images.dtype).expand(h, w)
    return torch.stack([(c + 1) * cols for c in range(num_classes)])[None].expand(b, -1, -1, -1).clone()


def red_channel(images: torch.Tensor) -> torch.Tensor:
    """raw_fn with one class per image channel: maps are the RGB planes, signed."""
    return images * 2.0 - 1.0


def test_single_scale_max_normalisation_hand_computed():
    images = torch.zeros(1, 3, 2, 3)
    labels = torch.tensor([[1.0, 1.0]])
    cams = multiscale_cams(horizontal_ramp, images, labels)
    expected = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]) / (2.0 + 1e-5)
    assert cams.shape == (1, 2, 2, 3)
    assert torch.allclose(cams[0, 0], expected)
    # class 1 is twice class 0 before normalisation: identical after it
    assert torch.allclose(cams[0, 1], cams[0, 0] * (4.0 + 2e-5) / (4.0 + 1e-5))


def test_flip_aggregation_sums_the_mirrored_pass_flipped_back():
    images = torch.zeros(1, 3, 2, 4)
    labels = torch.tensor([[1.0, 0.0]])
    cams = multiscale_cams(horizontal_ramp, images, labels, flip=True)
    # the ramp ignores its input, so the mirrored pass flipped back is the reversed ramp:
    # 0,1,2,3 + 3,2,1,0 = 3 everywhere (without the flip-back it would be 0,2,4,6)
    assert torch.allclose(cams[0, 0], torch.full((2, 4), 3.0 / (3.0 + 1e-5)))
    assert torch.allclose(multiscale_cams(horizontal_ramp, images, labels, flip=False)[0, 0, 0],
                          torch.tensor([0.0, 1.0, 2.0, 3.0]) / (3.0 + 1e-5))

    def mirror_aware(images: torch.Tensor) -> torch.Tensor:
        # a map that lights up the left-most column of whatever it is given
        b, _, h, w = images.shape
        out = torch.zeros(b, 1, h, w)
        out[..., 0] = 1.0
        return out

    cams = multiscale_cams(mirror_aware, images, torch.ones(1, 1), flip=True)
    # the flipped pass lights the right-most column once flipped back
    assert torch.allclose(cams[0, 0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]) / (1.0 + 1e-5))


def test_absent_classes_are_exactly_zero_and_range_is_unit():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 9, 7)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    for mode in ("max", "minmax"):
        cams = multiscale_cams(red_channel, images, labels, scales=(1.0, 0.5, 1.5), flip=True, normalize=mode)
        assert cams.shape == (3, 3, 9, 7) and cams.dtype == torch.float32
        assert cams.min() >= 0 and cams.max() <= 1
        absent = labels == 0
        assert torch.count_nonzero(cams[absent]) == 0
        present = cams[~absent].flatten(1)
        assert torch.all(present.amax(dim=1) > 0.99)
        if mode == "minmax":
            assert torch.allclose(present.amin(dim=1), torch.zeros(len(present)))


def test_relu_removes_negative_evidence():
    images = torch.full((1, 3, 4, 4), 0.25)  # red_channel gives -0.5 everywhere
    images[..., 0, 0] = 1.0  # one positive pixel
    cams = multiscale_cams(red_channel, images, torch.ones(1, 3), relu=True)
    assert cams[0, 0, 0, 0] > 0.99 and torch.count_nonzero(cams[0, 0]) == 1
    unrectified = multiscale_cams(red_channel, images, torch.ones(1, 3), relu=False, normalize="minmax")
    assert torch.allclose(unrectified, cams, atol=1e-4)


def test_scales_resize_the_input_and_maps_come_back_at_image_size():
    seen: list[tuple[int, int]] = []

    def record(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape[-2:]))
        return F.avg_pool2d(images[:, :2], 2)  # a coarser map, like a stride-2 network

    images = torch.rand(2, 3, 10, 16)
    cams = multiscale_cams(record, images, torch.ones(2, 2), scales=(1.0, 0.5, 2.0), flip=True)
    assert seen == [(10, 16), (10, 16), (5, 8), (5, 8), (20, 32), (20, 32)]
    assert cams.shape == (2, 2, 10, 16)


def test_multiscale_sum_matches_manual_computation():
    torch.manual_seed(1)
    images = torch.rand(2, 3, 8, 12)
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    total = torch.zeros(2, 3, 8, 12)
    for s in (1.0, 0.5):
        x = images if s == 1.0 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        for flipped in (False, True):
            inp = x.flip(-1) if flipped else x
            m = F.interpolate(F.relu(red_channel(inp)), size=(8, 12), mode="bilinear", align_corners=False)
            total += m.flip(-1) if flipped else m
    total = total * labels[:, :, None, None]
    expected = total / (total.flatten(2).amax(2)[..., None, None] + 1e-5)
    cams = multiscale_cams(red_channel, images, labels, scales=(1.0, 0.5), flip=True)
    assert torch.allclose(cams, expected, atol=1e-6)


def test_gradients_flow_through_raw_fn():
    weight = torch.tensor(2.0, requires_grad=True)
    images = torch.rand(1, 3, 4, 4)
    cams = multiscale_cams(lambda x: weight * red_channel(x) + 3.0, images, torch.ones(1, 3))
    cams.sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad)


def test_bad_inputs_raise_clear_errors():
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="labels must be"):
        multiscale_cams(red_channel, images, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"raw_fn must return .*\(2, 5, h, w\)"):
        multiscale_cams(red_channel, images, torch.ones(2, 5))
    with pytest.raises(ValueError, match="scales"):
        multiscale_cams(red_channel, images, torch.ones(2, 3), scales=(1.0, -0.5))
    with pytest.raises(ValueError, match="scales"):
        multiscale_cams(red_channel, images, torch.ones(2, 3), scales=())
    with pytest.raises(ValueError, match="normalize"):
        multiscale_cams(red_channel, images, torch.ones(2, 3), normalize="softmax")
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        multiscale_cams(red_channel, torch.rand(2, 1, 4, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="4-D"):
        normalize_cams(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="size"):
        resize_cams(torch.rand(1, 1, 4, 4), (0, 3))


def test_normalize_and_resize_helpers():
    x = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]]])
    assert torch.allclose(normalize_cams(x, "max"), x / (5.0 + 1e-5))
    assert torch.allclose(normalize_cams(x, "minmax"), (x - 1.0) / (4.0 + 1e-5))
    zeros = torch.zeros(1, 2, 3, 3)
    assert torch.count_nonzero(normalize_cams(zeros, "max")) == 0
    assert torch.count_nonzero(normalize_cams(zeros, "minmax")) == 0
    assert resize_cams(x, (2, 2)) is x
    up = resize_cams(x, (4, 6))
    assert up.shape == (1, 1, 4, 6)
    assert torch.allclose(up, F.interpolate(x, size=(4, 6), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("mode", ["max", "minmax"])
def test_normalisation_in_place_keeps_values_and_gradients(mode: str) -> None:
    """normalize_cams/multiscale_cams divide and mask in place (fewer full-size buffers): the values
    and the gradients are those of the out-of-place formulas."""
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 5, 6, requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    got = multiscale_cams(lambda x: maps, torch.rand(2, 3, 5, 6), labels, normalize=mode, relu=False, eps=1e-8)
    (got * torch.arange(180.0).view(2, 3, 5, 6)).sum().backward()
    grad, maps.grad = maps.grad, None
    masked = maps * labels[:, :, None, None]
    high = masked.flatten(2).amax(2)[..., None, None]
    low = masked.flatten(2).amin(2)[..., None, None] if mode == "minmax" else 0.0
    expected = (masked - low) / (high - low + 1e-8) * (labels[:, :, None, None] != 0)
    (expected * torch.arange(180.0).view(2, 3, 5, 6)).sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(grad, maps.grad, rtol=1e-6, atol=1e-6)
    assert float(grad.abs().sum()) > 0


@pytest.mark.parametrize("shape", [(16, 6, 32, 32), (1, 21, 37, 50), (2, 2, 1, 1), (3, 1, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_class_argmax_equals_torch_argmax_ties_included(shape, dtype):
    from wsss_kit.cam_ops import class_argmax

    g = torch.Generator().manual_seed(sum(shape))
    scores = (torch.rand(shape, generator=g) * 4).round().to(dtype)  # few values: many ties
    out = class_argmax(scores)
    assert out.dtype == torch.int64 and out.shape == (shape[0], *shape[2:])
    assert torch.equal(out, scores.argmax(1))
    strided = scores.transpose(2, 3)  # a non-contiguous view
    assert torch.equal(class_argmax(strided), strided.argmax(1))


def test_class_argmax_hand_cases_and_nan():
    from wsss_kit.cam_ops import class_argmax

    planes = [[[0.2, 0.5], [0.5, 0.1]], [[0.7, 0.5], [0.9, 0.1]], [[0.1, 0.0], [0.9, 0.3]]]  # class 0, 1, 2
    s = torch.tensor([planes])  # (1, 3, 2, 2)
    # (0,0): 0.2 0.7 0.1 -> 1; (0,1): 0.5 0.5 0.0 -> 0, the first on a tie; (1,0): 0.5 0.9 0.9 -> 1; (1,1) -> 2
    assert class_argmax(s).tolist() == [[[1, 0], [1, 2]]]
    s[0, 2, 1, 1] = float("nan")  # torch's argmax takes a NaN as the maximum; so does class_argmax
    assert torch.equal(class_argmax(s), s.argmax(1)) and int(class_argmax(s)[0, 1, 1]) == 2
