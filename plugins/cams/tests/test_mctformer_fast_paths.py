"""MCTformer's inference paths (attention rows formed head by head into running sums, a scale and
its mirror in one batch) give the maps of the explicit computation: every block's full attention,
averaged over heads, each view its own forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss_cams.mctformer import MCTformer, MCTformerV1, MCTformerV2
from wsss_cams.vit_tokens import block_adding_attention, block_with_attention
from wsss_kit.cam_ops import multiscale_cams
from wsss_kit.multiscale import multiscale_flip

C = 3


def tiny(version: int, **kw) -> MCTformer:
    torch.manual_seed(0)
    cls = MCTformerV1 if version == 1 else MCTformerV2
    model = cls(C, backbone="test_vit", img_size=64, **kw).eval()
    with torch.no_grad():  # non-trivial class tokens and head, so that every term shows
        model.cls_token.normal_(0, 0.5)
        if version == 2:
            model.head.weight.normal_(0, 0.2)
            model.head.bias.normal_(0, 0.2)
    return model


def explicit_raw_cams(model: MCTformer, images: torch.Tensor) -> torch.Tensor:
    """The official procedure written out: every block's attention, head mean, sums, refinement."""
    x, grid = model.tokens(images)
    depth, c = len(model.blocks), C
    attns = []
    for block in model.blocks:
        x, attn = block_with_attention(block, x)
        attns.append(attn.mean(dim=1))
    stacked = torch.stack(attns)  # depth × B × N × N
    maps = stacked[depth - model.cam_layers:].sum(0)[:, :c, c:]
    if model.version == 2 and model.attention_type != "attention":
        patch_cam = F.relu(model.head(model._patch_map(x, grid))).flatten(2)
        maps = maps * patch_cam if model.attention_type == "fused" else patch_cam
    if model.patch_refine:
        maps = torch.matmul(stacked[:, :, c:, c:].sum(0), maps.transpose(1, 2)).transpose(1, 2)
    return maps.reshape(images.shape[0], c, *grid)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("patch_refine", [True, False])
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (96, 48)])
def test_no_grad_raw_cams_equal_the_explicit_computation(version, patch_refine, size):
    model = tiny(version, patch_refine=patch_refine, cam_layers=2)
    torch.manual_seed(1)
    images = torch.rand(2, 3, *size)
    with torch.no_grad():
        fast = model.raw_cams(images)
        expected = explicit_raw_cams(model, images)
    assert fast.shape == (2, C, size[0] // 16, size[1] // 16)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    explicit = model.raw_cams(images)  # gradients on: the explicit, differentiable path
    assert explicit.requires_grad
    torch.testing.assert_close(fast, explicit.detach(), rtol=1e-5, atol=1e-6)
    # float64: equal to rounding, so any difference would be one of method
    model64, images64 = model.double(), images.double()
    with torch.no_grad():
        torch.testing.assert_close(model64.raw_cams(images64), explicit_raw_cams(model64, images64),
                                   rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("attention_type", ["patchcam", "attention"])
def test_v2_attention_types_equal_the_explicit_computation(attention_type):
    model = tiny(2, attention_type=attention_type)
    images = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model.raw_cams(images), explicit_raw_cams(model, images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [None, C, 1])
def test_block_adding_attention_adds_head_summed_rows_and_keeps_the_output(rows):
    model = tiny(1)
    x, _ = model.tokens(torch.rand(2, 3, 48, 64))
    n = x.shape[1]
    block = model.blocks[0]
    with torch.no_grad():
        expected_tokens, attn = block_with_attention(block, x)
        start = torch.rand(2, n if rows is None else rows, n)
        targets = [start.clone()]
        if rows is None:
            targets.append(torch.zeros(2, C, n))  # a second, shorter target fed from the same rows
        tokens = block_adding_attention(block, x, targets)
    torch.testing.assert_close(tokens, expected_tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tokens, block(x), rtol=1e-5, atol=1e-5)
    summed = attn.sum(dim=1)
    torch.testing.assert_close(targets[0], start + summed[:, : start.shape[1]], rtol=1e-5, atol=1e-6)
    if rows is None:
        torch.testing.assert_close(targets[1], summed[:, :C], rtol=1e-5, atol=1e-6)


def test_block_adding_attention_refuses_targets_of_another_shape():
    model = tiny(1)
    x, _ = model.tokens(torch.rand(1, 3, 64, 64))
    n = x.shape[1]
    for bad in (torch.zeros(2, C, n), torch.zeros(1, C, n + 1), torch.zeros(1, n + 1, n), torch.zeros(C, n)):
        with pytest.raises(ValueError, match=r"\(B, R, N\)"):
            block_adding_attention(model.blocks[0], x, [bad])


@pytest.mark.parametrize("version", [1, 2])
def test_cams_with_the_mirror_in_one_batch_equal_separate_passes(version):
    model = tiny(version).double()
    torch.manual_seed(3)
    images = torch.rand(2, 3, 64, 80, dtype=torch.float64)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return model.raw_cams(x)

    with torch.no_grad():
        for scales in [(1.0,), (1.0, 0.75, 1.25)]:
            calls.clear()
            separate = multiscale_cams(counted, images, labels, scales=scales, flip=True, normalize="minmax",
                                       relu=False, eps=1e-8)
            assert calls == [2] * (2 * len(scales))
            got = model.cams(images, labels, scales=scales, flip=True)
            torch.testing.assert_close(got, separate, rtol=0, atol=1e-10)


def test_multiscale_flip_batch_flip_runs_a_scale_and_its_mirror_together():
    torch.manual_seed(4)
    images = torch.rand(2, 3, 10, 14)
    weight = torch.randn(4, 3, 1, 1)
    seen = []

    def net(x):
        seen.append(x.shape[0])
        return F.conv2d(x[..., ::2, ::2], weight) ** 2  # not mirror-symmetric, halves the size

    kwargs = {"size": (10, 14), "prepare": lambda y, view: y + 1.0}
    plain = multiscale_flip(net, images, (1.0, 0.6), True, **kwargs)
    assert seen == [2, 2, 2, 2]
    seen.clear()
    batched = multiscale_flip(net, images, (1.0, 0.6), True, batch_flip=True, **kwargs)
    assert seen == [4, 4]
    torch.testing.assert_close(batched, plain, rtol=1e-6, atol=1e-6)
    seen.clear()
    assert torch.equal(multiscale_flip(net, images, (1.0,), False, batch_flip=True, **kwargs),
                       multiscale_flip(net, images, (1.0,), False, **kwargs))  # nothing to batch without flip
    with pytest.raises(ValueError, match="batch_flip"):
        multiscale_flip(lambda x: x[:2], images, (1.0,), True, batch_flip=True)


def test_block_adding_attention_without_output_only_adds_the_attention():
    model = tiny(1)
    x, _ = model.tokens(torch.rand(2, 3, 64, 48))
    n = x.shape[1]
    with torch.no_grad():
        _, attn = block_with_attention(model.blocks[-1], x)
        target = torch.zeros(2, n, n)
        assert block_adding_attention(model.blocks[-1], x, [target], output=False) is x
    torch.testing.assert_close(target, attn.sum(dim=1), rtol=1e-5, atol=1e-6)
