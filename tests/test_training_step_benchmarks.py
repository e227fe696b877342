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


def test_live_similarities_bring_a_random_clips_cosines_inside_the_clims_clamps() -> None:
    """clims_loss_cost.live_similarities: a random CLIP's cosines (~0, clamped to 1e-4) move to a value
    inside the clamps, so CLIP's terms reach the CAMs with gradients (what the one-step equality needs)."""
    pytest.importorskip("wsss_pole")
    import torch.nn.functional as F

    from wsss_kit.clip import TINY_CLIP, load_clip
    from wsss_pole import clims_loss

    torch.manual_seed(0)
    clip = load_clip(TINY_CLIP, None, precision="fp32")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    texts = ["a photo of cat.", "a photo of dog."]

    def cosines() -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(clip.encode_image(images), dim=-1) @ F.normalize(clip.encode_text(texts), dim=-1).t()

    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    present = labels > 0.5

    def pair_gradients() -> torch.Tensor:
        """|d loss / d CAM| summed over each present (image, class) pair's map: CLIP's terms only."""
        cams = torch.full((2, 2, 8, 8), 0.5, requires_grad=True)
        terms = clims_loss(images, cams, labels, clip=clip, class_text=clip.encode_text(texts), background_text=[],
                           reg_weight=0.0)
        terms["loss"].backward()
        assert cams.grad is not None
        return cams.grad.abs().sum(dim=(2, 3))[present]

    before = cosines()
    assert before.min() < 1e-4  # some clamped away by the losses' 1e-4 floor ...
    assert (pair_gradients() == 0).any()  # ... so their CAMs get nothing through CLIP
    misses = clip.cache_misses
    cl.live_similarities(clip)
    after = cosines()
    assert float(after.min()) > 0.05 and float(after.max()) < 0.95
    assert (pair_gradients() > 0).all()
    assert clip.cache_misses > misses  # the text cache was cleared with the new weights


def test_clims_official_refuses_what_is_not_the_checkout_or_the_clip_site(tmp_path) -> None:
    from benchmarks import clims_official as co

    with pytest.raises(FileNotFoundError, match=r"no step/train_clims\.py; give a checkout of github CVI-SZU/CLIMS"):
        co.load_official(tmp_path)
    for name in ("step/train_clims.py", "net/resnet50_clims.py", "clip_utils.py", "clip_loss.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    site = tmp_path / "site"
    with pytest.raises(FileNotFoundError, match=r"no clip/model\.py; run python benchmarks/clims_official\.py "
                                                 r"--prepare"):
        co.load_official(tmp_path, site)
    stand_in = co._stand_in("cv2", "not needed here")
    with pytest.raises(RuntimeError, match=r"cv2\.imread is a stand-in here \(not needed here\)"):
        stand_in.imread("x.png")


def test_clims_loss_cost_refuses_unknown_variants_and_official_outside_b32() -> None:
    pytest.importorskip("wsss_pole")
    args = argparse.Namespace(device="cpu", warmup=0, steps=1, b32_batch=2, b32_crop=64, variants=["clims", "nope"])
    with pytest.raises(SystemExit, match=r"unknown variants \['nope'\]; choose from multilabel"):
        cl.measure_setup("tiny", args)
    args = argparse.Namespace(device="cpu", warmup=0, steps=1, b32_batch=2, b32_crop=64, official_path="/x")
    with pytest.raises(SystemExit, match="--official runs the official VOC step .* setup b32"):
        cl.measure_setup("tiny", args)
    args = argparse.Namespace(device="cpu", warmup=0, steps=1, b32_batch=1, b32_crop=64, official_path="/x")
    with pytest.raises(SystemExit, match="one \\(image, class\\) pair .* --b32-batch 2 or more"):
        cl.measure_setup("b32", args)
