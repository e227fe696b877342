"""Fused attention (wsss_kit.attention): equal to nn.MultiheadAttention and to open_clip's own blocks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wsss_kit.attention import fuse_attention, mha_forward, sdpa_supported
from wsss_kit.clip import SYNTHETIC_CLIP, TINY_CLIP, load_clip
from wsss_kit.clip.loading import build_open_clip_model


def _mha(batch_first: bool, dim: int = 16, heads: int = 4) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(dim, heads, batch_first=batch_first)
    with torch.no_grad():
        attn.in_proj_bias.normal_()  # PyTorch initialises the biases to zero: make them count
        attn.out_proj.bias.normal_()
    return attn


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_self_attention_equals_the_module(batch_first: bool, grad: bool) -> None:
    attn = _mha(batch_first)
    attn.train(grad)  # eval + no_grad is the native fast path; train + grad the F.multi_head_attention_forward one
    x = torch.randn(3, 7, 16) if batch_first else torch.randn(7, 3, 16)
    with torch.set_grad_enabled(grad):
        expected = attn(x, x, x, need_weights=False)[0]
        got = mha_forward(attn, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected)
    if grad:
        g_ref = torch.autograd.grad(expected.square().sum(), attn.in_proj_weight)[0]
        g_got = torch.autograd.grad(got.square().sum(), attn.in_proj_weight)[0]
        torch.testing.assert_close(g_got, g_ref)


def test_cross_attention_and_masks_equal_the_module() -> None:
    attn = _mha(True).eval()
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    causal = torch.full((5, 9), float("-inf")).triu(1)
    blocked = torch.rand(5, 9) > 0.6
    blocked[:, 0] = False  # every query keeps a key (an all-masked row is NaN in both)
    per_head = torch.randn(2 * 4, 5, 9)
    with torch.no_grad():
        torch.testing.assert_close(mha_forward(attn, q, kv, kv), attn(q, kv, kv, need_weights=False)[0])
        for mask in (causal, blocked, per_head):
            expected = attn(q, kv, kv, need_weights=False, attn_mask=mask)[0]
            torch.testing.assert_close(mha_forward(attn, q, kv, kv, attn_mask=mask), expected)


def test_bad_mask_names_the_expected_shape() -> None:
    attn = _mha(True)
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=r"attn_mask must be \(5, 5\).*got \(4, 4\)"):
        mha_forward(attn, x, attn_mask=torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"B·heads=8, 5, 5\).*got \(3, 5, 5\)"):
        mha_forward(attn, x, attn_mask=torch.zeros(3, 5, 5))


def test_unsupported_modules_are_recognised() -> None:
    assert sdpa_supported(nn.MultiheadAttention(16, 4))
    assert not sdpa_supported(nn.MultiheadAttention(16, 4, kdim=8, vdim=8))
    assert not sdpa_supported(nn.MultiheadAttention(16, 4, add_bias_kv=True))
    assert not sdpa_supported(nn.MultiheadAttention(16, 4, add_zero_attn=True))


@pytest.mark.parametrize("name", [TINY_CLIP, SYNTHETIC_CLIP])
def test_fused_open_clip_model_equals_the_original(name: str) -> None:
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    original, _, _ = build_open_clip_model(name)
    fused = copy.deepcopy(original)
    blocks = len(original.visual.transformer.resblocks) + len(original.transformer.resblocks)
    assert fuse_attention(fused) == blocks
    assert fuse_attention(fused) == 0  # already fused
    block = fused.visual.transformer.resblocks[0]
    assert isinstance(block, ResidualAttentionBlock) and type(block).__name__ == "FusedResidualAttentionBlock"
    assert list(fused.state_dict()) == list(original.state_dict())
    size = original.visual.image_size
    side = size if isinstance(size, int) else size[0]
    images = torch.randn(2, 3, side, side)
    tokens = torch.randint(1, 400, (3, original.positional_embedding.shape[0]))
    with torch.no_grad():  # eval + no_grad: open_clip's blocks take the native MHA fast path
        torch.testing.assert_close(fused.encode_image(images), original.encode_image(images))
        torch.testing.assert_close(fused.encode_text(tokens), original.encode_text(tokens))  # causal mask
    # with gradients (the CLIMS/POLE losses): equal outputs and equal gradients to the images and weights
    a, b = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    original.encode_image(a).square().sum().backward()
    fused.encode_image(b).square().sum().backward()
    torch.testing.assert_close(b.grad, a.grad)
    w_ref = original.visual.transformer.resblocks[-1].attn.in_proj_weight.grad
    torch.testing.assert_close(fused.visual.transformer.resblocks[-1].attn.in_proj_weight.grad, w_ref)


def test_clip_model_fuses_by_default_and_dense_features_are_unchanged() -> None:
    torch.manual_seed(0)
    fused = load_clip(TINY_CLIP)
    plain = load_clip(TINY_CLIP, fused_attention=False)
    plain.model.load_state_dict(fused.model.state_dict())
    assert fused.fused_attention and not plain.fused_attention
    assert type(fused.visual.transformer.resblocks[0]).__name__ == "FusedResidualAttentionBlock"
    assert type(plain.visual.transformer.resblocks[0]).__name__ == "ResidualAttentionBlock"
    images = torch.rand(2, 3, 48, 80)  # off the native grid: resized position embedding
    with torch.no_grad():
        a, b = fused.dense_features(images, layers=(0, 1)), plain.dense_features(images, layers=(0, 1))
        for i in (0, 1):
            torch.testing.assert_close(a.layers[i], b.layers[i])
        torch.testing.assert_close(a.pixel_embeddings, b.pixel_embeddings)
        torch.testing.assert_close(fused.encode_text(["a photo of a ball."]), plain.encode_text(["a photo of a ball."]))
    prompts = fused.tokenize_prompts(["ball", "kite"], template="a photo of {}.")
    ctx = torch.randn(4, fused.text_width, requires_grad=True)
    got = fused.encode_text_with_context(prompts, ctx, position="after_start")
    expected = plain.encode_text_with_context(prompts, ctx, position="after_start")
    torch.testing.assert_close(got, expected)  # the prompt-learning path cuts the causal mask to T
    g_got = torch.autograd.grad(got.sum(), ctx)[0]
    g_ref = torch.autograd.grad(plain.encode_text_with_context(prompts, ctx, position="after_start").sum(), ctx)[0]
    torch.testing.assert_close(g_got, g_ref)
