"""benchmarks/weakclip_step.py and clims_loss_cost.py: their official-like variants compute the same
losses and parameter updates as ours (fp32), and the CLIP weights of the official-like variants get
gradients but do not move. Tiny models; no timing asserted."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks import clims_loss_cost as cl
from benchmarks import weakclip_step as ws


def test_weakclip_official_like_step_equals_ours() -> None:
    pytest.importorskip("pydensecrf")
    pytest.importorskip("wsss_weakclip")
    args = argparse.Namespace(clip="wsss-tiny-clip", weights="none", crop=64, batch=2, device="cpu",
                              preset="official", clip_precision="fp32", baseline_precision="fp32", threads=1)
    out = ws.one_step_equality(["official_like", "ours"], args)
    assert out["loss"]["official_like"] > 0
    assert out["max_loss_difference"]["ours"] < 1e-5
    # AdamW's first step moves every weight by about lr·sign(grad): float noise flips only tiny gradients
    assert out["max_update_difference"]["ours"] < 0.25 * ws.LR
    assert out["trained_tensors"]["ours"] > 0
    assert out["official_like_clip_unchanged"] is True


def test_weakclip_variants_follow_auto_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss_kit.clip import preprocessing

    args = argparse.Namespace(clip="ViT-B-16", clip_precision="auto", device="cpu")
    assert ws.vision_width("ViT-B-16") == 768 and ws.vision_width("wsss-tiny-clip") == 64
    monkeypatch.setattr(preprocessing, "cpu_has_fast_bf16", lambda: True)
    assert ws.variants_for(args) == ["official_like", "ours_fp32", "ours"]
    monkeypatch.setattr(preprocessing, "cpu_has_fast_bf16", lambda: False)
    assert ws.variants_for(args) == ["official_like", "ours"]  # ours already fp32


def test_clims_official_like_loss_and_gradients_equal_ours() -> None:
    wsss_kit = pytest.importorskip("wsss_kit")
    pytest.importorskip("wsss_pole")
    from wsss_kit.clip import SYNTHETIC_CLIP, load_clip

    kwargs, batch, crop = cl.setup_kwargs("tiny", argparse.Namespace())
    del kwargs["clip_model"], kwargs["clip_weights"]
    # the embedded world's trained CLIP: its similarities fall inside the losses' clamps, so gradients
    # reach the CAMs through CLIP (a random CLIP's are clamped away)
    clip = load_clip(SYNTHETIC_CLIP, "released:wsss_synthetic_clip", precision="fp32")
    official_clip = load_clip(SYNTHETIC_CLIP, None, precision="fp32", frozen=False, keep_eval=True)
    official_clip.load_state_dict(clip.state_dict())
    torch.manual_seed(0)
    model = wsss_kit.create("cams", "clims", **kwargs, clip_model=clip).train()
    images = torch.rand(4, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    labels = cl.labels_for(4, kwargs["num_classes"])

    def loss_and_grads(official: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        cams = torch.sigmoid(model.raw_cams(images))
        if official:
            loss = cl.official_like_loss(model, official_clip, images, cams, labels)
        else:
            loss = model.criterion(images, cams, labels, clip=model.clip, class_text=model.class_text_features(),
                                   background_text=model.background_prompts)["loss"]
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.eval()  # BatchNorm statistics must not move between the two passes
    ours, ours_grads = loss_and_grads(False)
    like, like_grads = loss_and_grads(True)
    torch.testing.assert_close(like, ours, rtol=1e-5, atol=1e-6)
    assert set(like_grads) == set(ours_grads) and ours_grads
    for name, grad in ours_grads.items():
        torch.testing.assert_close(like_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # the official way: CLIP's weights get gradients (computed for nothing); ours: none
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in official_clip.parameters())
    assert all(p.grad is None for p in clip.parameters())
