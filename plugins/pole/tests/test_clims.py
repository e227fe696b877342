"""CLIMS: the loss terms against hand-computed values, the CLIP inputs, the network, its training."""

from __future__ import annotations

import importlib.metadata
import math

import pytest
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_cams import ResNetCAM
from wsss_kit.clip import IMAGENET_MEAN, IMAGENET_STD, TINY_CLIP, load_clip
from wsss_pole import CLIMS, CLIMSLoss, background_prompts, background_words, clims_loss, clims_masked_inputs
from wsss_pole.losses import (
    area_regularization_loss,
    background_suppression_loss,
    background_text_matching_loss,
    clims_matching_terms,
    object_text_matching_loss,
)

NAMES = ["cat", "dog", "person"]
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def make_clims(seed: int = 0, **kwargs) -> CLIMS:
    torch.manual_seed(seed)
    kwargs.setdefault("class_names", NAMES)
    kwargs.setdefault("backbone", "test_resnet")
    kwargs.setdefault("clip_model", TINY_CLIP)
    return CLIMS(len(kwargs["class_names"]), **kwargs)


def images(b: int = 2, h: int = 64, w: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def capture_loss_cams(model: CLIMS, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Record the CAMs the network hands to its loss (``captured["cams"]``)."""
    captured: dict[str, torch.Tensor] = {}
    forward = model.criterion.forward

    def spy(images, cams, labels, **kwargs):
        captured["cams"] = cams.detach().clone()
        return forward(images, cams, labels, **kwargs)

    monkeypatch.setattr(model.criterion, "forward", spy)
    return captured


def unit(angle: float) -> torch.Tensor:
    """A 3-d vector at ``angle`` from e1 in the e1-e2 plane (cosine with e1 = cos(angle))."""
    return torch.tensor([math.cos(angle), math.sin(angle), 0.0])


# ---------------------------------------------------------------------------- the single terms
def test_clims_object_text_matching_is_the_clamped_negative_log_mean():
    s = torch.tensor([0.5, 0.2, 1.0, -0.3], dtype=torch.float64)
    expected = -(math.log(0.5) + math.log(0.2) + math.log(0.9999) + math.log(1e-4)) / 4
    assert object_text_matching_loss(s).item() == pytest.approx(expected, rel=1e-6)


def test_clims_background_text_matching_is_the_clamped_negative_log_of_one_minus_s():
    s = torch.tensor([0.5, 0.2, 1.0, -0.3], dtype=torch.float64)
    expected = -(math.log(0.5) + math.log(0.8) + math.log(1e-4) + math.log(1 - 1e-4)) / 4
    assert background_text_matching_loss(s).item() == pytest.approx(expected, rel=1e-5)


def test_clims_background_suppression_sums_over_prompts_above_the_threshold():
    s = torch.tensor([[0.30, 0.26, 0.10], [0.27, 0.50, 0.261]], requires_grad=True)
    loss = background_suppression_loss(s, threshold=0.26)
    expected = -sum(math.log(1 - v) for v in (0.30, 0.27, 0.50, 0.261))  # 0.26 itself is not above
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.equal(s.grad != 0, s.detach() > 0.26)  # the selection carries no gradient
    assert background_suppression_loss(s, threshold=0.285).item() == pytest.approx(
        -math.log(0.7) - math.log(0.5), rel=1e-5)
    assert background_suppression_loss(s.new_zeros(2, 0)).item() == 0.0  # no background prompts


def test_clims_area_term_is_the_mean_over_all_classes_and_pixels():
    cams = torch.rand(2, 3, 4, 5)
    assert area_regularization_loss(cams).item() == pytest.approx(cams.sum().item() / cams.numel(), rel=1e-6)


def test_clims_matching_terms_on_constructed_embeddings():
    e1 = torch.tensor([1.0, 0.0, 0.0])
    a0, a1 = math.acos(0.6), math.acos(0.3)
    fg = torch.stack([3 * e1, 0.5 * e1])  # norms differ: the similarity is a cosine
    text = torch.stack([2 * unit(a0), unit(a1)])  # s(fg, text) = 0.6, 0.3
    bg = torch.stack([unit(a0 + math.acos(0.1)), 7 * unit(a1 + math.acos(-0.2))])  # s(bg, text) = 0.1, -0.2
    background_text = torch.stack([unit(math.acos(0.4)), unit(math.acos(0.2)), -e1])  # s(fg, .) = 0.4, 0.2, -1
    terms = clims_matching_terms(fg, bg, text, background_text, cbs_threshold=0.26)
    assert terms["otm"].item() == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2, rel=1e-5)
    assert terms["btm"].item() == pytest.approx(-(math.log(0.9) + math.log(1 - 1e-4)) / 2, rel=1e-5)
    assert terms["cbs"].item() == pytest.approx(-2 * math.log(0.6), rel=1e-5)  # 0.4 for both pairs


def test_clims_adapters_change_object_and_background_matching_but_not_suppression():
    fg, bg, text = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    background_text = torch.randn(4, 8)
    rotate = torch.linalg.qr(torch.randn(8, 8))[0]
    plain = clims_matching_terms(fg, bg, text, background_text, cbs_threshold=-1.0)
    adapted = clims_matching_terms(fg, bg, text, background_text, cbs_threshold=-1.0,
                                   image_adapter=lambda v: v @ rotate, text_adapter=lambda t: 2 * t)
    manual = clims_matching_terms(fg @ rotate, bg @ rotate, text, background_text, cbs_threshold=-1.0)
    assert adapted["otm"].item() == pytest.approx(manual["otm"].item(), rel=1e-5)
    assert adapted["btm"].item() == pytest.approx(manual["btm"].item(), rel=1e-5)
    assert adapted["cbs"].item() == pytest.approx(plain["cbs"].item(), rel=1e-6)


# ---------------------------------------------------------------------------- the CLIP inputs
def test_clims_masked_inputs_are_p_x_and_one_minus_p_x_at_the_clip_size():
    x, cams = images(2, 20, 28), torch.rand(2, 3, 5, 7)
    got = clims_masked_inputs(x, cams, LABELS, 16)
    assert got.image_index.tolist() == [0, 0, 1] and got.class_index.tolist() == [0, 2, 1]
    for n, (b, k) in enumerate([(0, 0), (0, 2), (1, 1)]):
        xs = F.interpolate(x[b:b + 1], size=(16, 16), mode="bilinear", align_corners=True)[0]
        p = F.interpolate(cams[b:b + 1, k:k + 1], size=(16, 16), mode="bilinear", align_corners=True)[0]
        assert torch.allclose(got.foreground[n], p * xs, atol=1e-6)
        assert torch.allclose(got.background[n], (1 - p) * xs, atol=1e-6)


def test_clims_network_feeds_clip_the_masked_imagenet_normalised_images(monkeypatch):
    model = make_clims(clip_input_size=32)
    seen = {}
    encode = model.clip.encode_image

    def spy(batch, *, normalized=False):
        seen["batch"], seen["normalized"] = batch.detach().clone(), normalized
        return encode(batch, normalized=normalized)

    monkeypatch.setattr(model.clip, "encode_image", spy)
    x = images()
    captured = capture_loss_cams(model, monkeypatch)
    model(x, LABELS)
    assert seen["normalized"] is True
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = clims_masked_inputs((x - mean) / std, captured["cams"], LABELS, 32)
    assert seen["batch"].shape == (6, 3, 32, 32)  # 3 foregrounds, then their 3 backgrounds
    assert torch.allclose(seen["batch"][:3], expected.foreground, atol=1e-5)
    assert torch.allclose(seen["batch"][3:], expected.background, atol=1e-5)


def test_clims_cams_in_the_loss_are_the_sigmoid_of_the_classifier_at_feature_resolution(monkeypatch):
    model = make_clims()
    captured = capture_loss_cams(model, monkeypatch)
    x = images(2, 64, 48)
    out = model(x, LABELS)
    cams = captured["cams"]
    assert cams.shape == (2, 3, 4, 3)  # output stride 16
    assert cams.min() > 0 and cams.max() < 1
    with torch.no_grad():
        raw = model.raw_cams(x)
    assert torch.allclose(cams, torch.sigmoid(raw), atol=1e-6)
    assert torch.allclose(out["logits"], raw.mean(dim=(2, 3)), atol=1e-5)
    assert out["reg"].item() == pytest.approx(cams.mean().item(), rel=1e-5)


def test_clims_loss_is_the_weighted_sum_and_presets_set_the_weights():
    clip = load_clip(TINY_CLIP)
    x, cams = images(), torch.rand(2, 3, 4, 4)
    text = torch.randn(3, clip.embed_dim)
    out = clims_loss(x, cams, LABELS, clip=clip, class_text=text, background_text=background_prompts("voc"),
                     otm_weight=2.0, btm_weight=3.0, cbs_weight=5.0, reg_weight=7.0)
    total = 2 * out["otm"] + 3 * out["btm"] + 5 * out["cbs"] + 7 * out["reg"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    voc, coco = CLIMSLoss(), CLIMSLoss(preset="coco")
    assert (voc.otm_weight, voc.btm_weight, voc.cbs_weight, voc.reg_weight, voc.cbs_threshold) == (10, 24, 1, 0.2, 0.26)
    assert (coco.otm_weight, coco.btm_weight, coco.cbs_weight, coco.reg_weight, coco.cbs_threshold) == \
        (2, 14, 1.25, 0.2, 0.285)
    assert CLIMSLoss(preset="coco", cbs_threshold=0.3).cbs_threshold == 0.3
    out_module = CLIMSLoss(otm_weight=2.0, btm_weight=3.0, cbs_weight=5.0, reg_weight=7.0)(
        x, cams, LABELS, clip=clip, class_text=text, background_text=background_prompts("voc"))
    assert out_module["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-6)


def test_clims_loss_takes_per_image_class_texts():
    clip = load_clip(TINY_CLIP)
    x, cams = images(), torch.rand(2, 3, 4, 4)
    text = torch.randn(3, clip.embed_dim)
    kwargs = {"clip": clip, "background_text": []}
    shared = clims_loss(x, cams, LABELS, class_text=text, **kwargs)
    per_image = text.expand(2, 3, -1).clone()
    assert torch.allclose(clims_loss(x, cams, LABELS, class_text=per_image, **kwargs)["loss"], shared["loss"])
    per_image[0, 1] = torch.randn(clip.embed_dim)  # class 1 is absent from image 0: unused
    assert torch.allclose(clims_loss(x, cams, LABELS, class_text=per_image, **kwargs)["loss"], shared["loss"])
    per_image[1, 1] = torch.randn(clip.embed_dim)  # present in image 1: used
    assert not torch.allclose(clims_loss(x, cams, LABELS, class_text=per_image, **kwargs)["otm"], shared["otm"])


def test_clims_loss_without_present_classes_keeps_only_the_area_term():
    clip = load_clip(TINY_CLIP)
    cams = torch.rand(2, 3, 4, 4, requires_grad=True)
    out = clims_loss(images(), cams, torch.zeros(2, 3), clip=clip, class_text=torch.randn(3, clip.embed_dim),
                     background_text=["a photo of tree."])
    assert out["otm"].item() == out["btm"].item() == out["cbs"].item() == 0.0
    assert out["loss"].item() == pytest.approx(0.2 * cams.mean().item(), rel=1e-6)
    out["loss"].backward()
    assert cams.grad is not None


def test_clims_loss_rejects_bad_inputs():
    clip = load_clip(TINY_CLIP)
    x, cams, text = images(), torch.rand(2, 3, 4, 4), torch.randn(3, clip.embed_dim)
    with pytest.raises(ValueError, match="labels"):
        clims_loss(x, cams, torch.ones(2, 4), clip=clip, class_text=text, background_text=[])
    with pytest.raises(ValueError, match="class_text"):
        clims_loss(x, cams, LABELS, clip=clip, class_text=text[:2], background_text=[])
    with pytest.raises(TypeError, match="CLIPModel"):
        clims_loss(x, cams, LABELS, clip=None, class_text=text, background_text=[])
    with pytest.raises(ValueError, match="normalization"):
        CLIMSLoss(normalization="ImageNet")
    with pytest.raises(ValueError, match="unknown CLIMS preset"):
        CLIMSLoss(preset="ade")


def test_clims_background_lists_ship_as_package_data():
    voc = background_words("voc")
    assert voc == ["tree", "river", "sea", "lake", "water", "railway", "railroad", "track", "stone", "rocks"]
    coco = background_words("coco")
    assert len(coco) == 88 and len(set(coco)) == 88 and coco[:2] == ["street sign", "mountain"]
    assert background_prompts("voc")[0] == "a photo of tree."
    assert background_prompts(["sky"], template=None) == ["sky"]
    with pytest.raises(ValueError, match="shipped lists: voc, coco"):
        background_words("ade")


# ---------------------------------------------------------------------------- the network
def test_clims_gradients_reach_the_cam_network_and_none_reaches_clip():
    model = make_clims().train()
    model(images(), LABELS)["loss"].backward()
    for name, p in model.named_parameters():
        if name.startswith("clip."):
            assert not p.requires_grad and p.grad is None, name
        elif p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    stem = model.cam.backbone.conv1
    assert all(not p.requires_grad for p in stem.parameters())
    assert all(p.requires_grad for p in model.cam.backbone.layer1.parameters())  # nothing detached (CLIMS)


def test_clims_batchnorm_trains_with_batch_statistics_including_the_frozen_stem():
    model = make_clims().train()
    bns = [m for m in model.cam.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.training for m in bns)
    assert not model.clip.model.training
    stem_bn = model.cam.backbone.bn1
    before = stem_bn.running_mean.clone()
    model(images(), LABELS)
    assert not torch.equal(before, stem_bn.running_mean)  # official: the stem's bn1 stays in train mode
    model = make_clims(stem_batch_stats=False).train()
    assert not model.cam.backbone.bn1.training and model.cam.backbone.layer1[0].bn1.training
    model = make_clims(fixed_bn=True).train()
    assert not any(m.training for m in model.cam.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="stem_batch_stats"):
        make_clims(fixed_bn=True, stem_batch_stats=True)


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_clims_cams_shapes_ranges_and_zero_for_absent_classes(size):
    model = make_clims().eval()
    x = images(2, *size)
    with torch.no_grad():
        cams = model.cams(x, LABELS, scales=(1.0, 0.5), flip=True)
    assert cams.shape == (2, 3, *size) and cams.dtype == torch.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert torch.count_nonzero(cams[LABELS == 0]) == 0
    # CLIMS's inference is ResNetCAM's (no sigmoid): the same weights give the same CAMs
    plain = ResNetCAM(3, backbone="test_resnet", fixed_bn=False, frozen_stages=0).eval()
    plain.load_state_dict({k[len("cam."):]: v for k, v in model.state_dict().items() if k.startswith("cam.")})
    with torch.no_grad():
        assert torch.allclose(plain.cams(x, LABELS, scales=(1.0, 0.5), flip=True), cams, atol=1e-6)


def test_clims_initialises_from_a_resnet_cam_checkpoint_in_either_layout(tmp_path):
    torch.manual_seed(5)
    baseline = ResNetCAM(3, backbone="test_resnet")
    ours = tmp_path / "resnet_cam.pt"
    torch.save(baseline.state_dict(), ours)
    official = tmp_path / "res50_cam.pth"  # the IRN layout: resnet50.<torchvision name> + classifier
    torch.save({(f"resnet50.{k[len('backbone.'):]}" if k.startswith("backbone.") else k): v
                for k, v in baseline.state_dict().items()}, official)
    for path in (ours, official):
        model = make_clims(seed=9, init_checkpoint=str(path))
        state = model.state_dict()
        for key, value in baseline.state_dict().items():
            assert torch.equal(state[f"cam.{key}"], value), key


def test_clims_checkpoints_leave_clip_out_and_round_trip(tmp_path):
    model = make_clims(seed=0)
    state = model.state_dict()
    assert state and not any(k.startswith("clip.") for k in state)
    assert model.clip.state_dict()  # the CLIP module itself still has its weights
    path = tmp_path / "model.pt"
    torch.save(state, path)
    other = make_clims(seed=1)
    other.load_state_dict(torch.load(path, weights_only=True))  # strict: CLIP keys may be absent
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())
    third = make_clims(seed=2)
    third.load_weights(str(path))  # CLIMS layout
    assert torch.equal(third.cam.classifier.weight, model.cam.classifier.weight)
    torch.save(ResNetCAM(3, backbone="test_resnet").state_dict(), tmp_path / "cam.pt")
    third.load_weights(str(tmp_path / "cam.pt"))  # a CAM network alone
    with pytest.raises(wsss_kit.WeightsError):
        third.load_weights(str(tmp_path / "missing.pt"))


def test_clims_encodes_the_fixed_prompts_once():
    model = make_clims()
    text = model.class_text_features()
    expected = model.clip.encode_text(["a photo of cat.", "a photo of dog.", "a photo of player."])
    assert torch.allclose(text, expected)
    model(images(), LABELS)
    misses = model.clip.cache_misses
    model(images(), LABELS)
    assert model.clip.cache_misses == misses == 2  # class prompts and background prompts, once each


def test_clims_param_groups_and_a_learnable_prompt():
    model = make_clims()
    groups = model.param_groups(0.1)
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert groups[1]["params"] == [model.cam.classifier.weight]
    clip_ids = {id(p) for p in model.clip.parameters()}
    assert not any(id(p) in clip_ids for g in groups for p in g["params"])
    coop = wsss_kit.create("prompts", "coop")
    model = make_clims(prompt=coop, prompt_lr_mult=0.01)
    groups = model.param_groups(0.1)
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0, 0.01]
    assert groups[2]["params"] == [coop.context] and groups[2]["lr"] == pytest.approx(0.001)
    model(images(), LABELS)["loss"].backward()
    assert coop.context.grad is not None and coop.context.grad.abs().sum() > 0
    assert any(k.startswith("prompt.") for k in model.state_dict())


def test_clims_determinism_under_a_seed():
    outs = []
    for _ in range(2):
        model = make_clims(seed=3).train()
        out = model(images(), LABELS)
        out["loss"].backward()
        outs.append((out["loss"].detach(), model.cam.classifier.weight.grad.clone()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_clims_presets_class_names_and_argument_errors():
    torch.manual_seed(0)
    voc = CLIMS(20, backbone="test_resnet", clip_model=TINY_CLIP)  # the VOC preset's class names
    assert voc.prompt_names[14] == "player" and voc.prompt_names[10] == "dining table"
    assert len(voc.background_prompts) == 10 and voc.criterion.btm_weight == 24
    with pytest.raises(ValueError, match="class_names is needed"):
        CLIMS(3, backbone="test_resnet", clip_model=TINY_CLIP)
    with pytest.raises(ValueError, match="2 names but num_classes=3"):
        CLIMS(3, ["a", "b"], backbone="test_resnet", clip_model=TINY_CLIP)
    with pytest.raises(ValueError, match="frozen"):
        make_clims(clip_model=load_clip(TINY_CLIP, frozen=False))
    with pytest.raises(ValueError, match="clip_weights"):
        make_clims(clip_model="ViT-L-14")
    with pytest.raises(ValueError, match="labels must be"):
        make_clims()(images(), torch.ones(2, 4))


def test_clims_plugins_are_registered():
    dist = "wsss-kit-pole"
    version = importlib.metadata.version(dist)
    found = {(i.kind, i.name): i for i in wsss_kit.list_plugins(load=True) if i.dist == dist}
    for key in (("cams", "clims"), ("losses", "clims")):
        assert found[key].status == "ok" and found[key].version == version, found[key].error
    assert ("prompts", "pole_synonyms") in found
    torch.manual_seed(0)
    model = wsss_kit.create("cams", "clims", num_classes=3, class_names=NAMES, backbone="test_resnet",
                            clip_model=TINY_CLIP, prompt={"type": "prompts/template", "templates": "a {}."})
    assert isinstance(model, CLIMS) and isinstance(model, wsss_kit.CAMGenerator)
    assert model.prompt.prompts(model.prompt_names) == ["a cat.", "a dog.", "a player."]
    assert isinstance(wsss_kit.create("losses", "clims", preset="coco"), CLIMSLoss)


def test_clims_trains_end_to_end_through_the_engine(tmp_path):
    from wsss_kit.engine import TrainConfig, train

    dataset = wsss_kit.create("datasets", "synthetic", split="train", num_images=4, image_size=64)
    torch.manual_seed(0)
    model = CLIMS(dataset.num_classes, dataset.class_names, backbone="test_resnet", clip_model=TINY_CLIP)
    config = TrainConfig(steps=2, batch_size=2, lr=2.5e-4, weight_decay=1e-4, device="cpu", log_every=1,
                         checkpoint_every=100)
    result = train(model, dataset, config, tmp_path / "run")
    assert result.steps == 2 and result.final_loss is not None and math.isfinite(result.final_loss)
    assert {"otm", "btm", "cbs", "reg", "lr"} <= set(result.history[-1])
    saved = torch.load(result.model_path, weights_only=True)
    assert not any(k.startswith("clip.") for k in saved)
    fresh = CLIMS(dataset.num_classes, dataset.class_names, backbone="test_resnet", clip_model=TINY_CLIP)
    fresh.load_weights(str(result.model_path))
    assert torch.equal(fresh.cam.classifier.weight, model.cam.classifier.weight)
