"""``precision="auto"``: what it resolves to per device and tower width, and bf16 staying close to fp32."""

from __future__ import annotations

import pytest
import torch

from wsss_kit.clip import AUTO_BF16_MIN_WIDTH, TINY_CLIP, load_clip, preprocessing, resolve_precision


@pytest.mark.parametrize("amx", [True, False])
def test_auto_resolves_by_device_and_width(amx: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocessing, "cpu_has_fast_bf16", lambda: amx)
    assert resolve_precision("auto", "cuda", 768) == "fp16"
    assert resolve_precision("auto", "cpu", 768) == ("bf16" if amx else "")
    assert resolve_precision("auto", "cpu", AUTO_BF16_MIN_WIDTH) == ("bf16" if amx else "")
    assert resolve_precision("auto", "cpu", AUTO_BF16_MIN_WIDTH - 1) == ""  # small towers: the casts cost more
    assert resolve_precision("auto", "cpu", None) == ("bf16" if amx else "")
    assert resolve_precision("auto", "mps", 768) == ""
    for fixed in ("fp32", "fp16", "bf16"):  # explicit precisions are taken as they are
        assert resolve_precision(fixed, "cpu", 64) == fixed


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, fp16, bf16, got 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_clip_model_resolves_auto_with_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preprocessing, "cpu_has_fast_bf16", lambda: True)
    clip = load_clip(TINY_CLIP, precision="auto")
    assert clip.vision_width < AUTO_BF16_MIN_WIDTH
    assert clip.resolved_precision("cpu") == "" and clip.resolved_precision("cuda") == "fp16"
    # the tiny tower under auto: no autocast on the CPU, the same numbers as fp32
    fp32 = load_clip(TINY_CLIP, precision="fp32")
    fp32.load_state_dict(clip.state_dict())
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(clip.encode_image(images), fp32.encode_image(images))
    monkeypatch.setattr(preprocessing, "AUTO_BF16_MIN_WIDTH", 1)  # as if the tower were wide
    assert clip.resolved_precision("cpu") == "bf16"
    with clip.autocast("cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_bf16_close_to_fp32_images_text_and_gradients() -> None:
    torch.manual_seed(0)
    fp32 = load_clip(TINY_CLIP, precision="fp32")
    bf16 = load_clip(TINY_CLIP, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    outs, grads = [], []
    for clip in (fp32, bf16):
        x = images.clone().requires_grad_(True)
        out = clip.encode_image(x)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        assert out.dtype == torch.float32 and x.grad is not None
        outs.append(out.detach())
        grads.append(x.grad)
    cos = torch.nn.functional.cosine_similarity(outs[0], outs[1])
    assert cos.min() > 0.999, cos
    assert (outs[1] - outs[0]).norm() / outs[0].norm() < 0.03
    assert torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0) > 0.99
    text32, text16 = fp32.encode_text(["a photo of a dog.", "a photo of a cat."]), bf16.encode_text(
        ["a photo of a dog.", "a photo of a cat."])
    assert text16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(text32, text16).min() > 0.999
