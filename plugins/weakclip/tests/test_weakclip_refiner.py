"""The WeakCLIP refiner: official inference (windows, scales, flip, CRF, Eq. 14), training step, checks.

Tiny random CLIP (``wsss-tiny-clip``) on CPU; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crf_available import HAVE_PYDENSECRF, needs_crf  # noqa: F401 (same folder)

import wsss_kit
from wsss_kit.config import validate
from wsss_kit.errors import ConfigError
from wsss_weakclip.inference import (
    OFFICIAL_SCALES,
    crf_over_predicted_classes,
    multiscale_softmax,
    restrict_to_labels,
    scaled_size,
)
from wsss_weakclip.refiner import WeakCLIPRefiner, check_seed_batch
from wsss_weakclip.sliding_window import slide_logits, window_boxes, window_starts

NAMES = ("ball", "box", "kite")
TINY = dict(clip_model="wsss-tiny-clip", clip_weights=None, n_context=2, crf_workers=0, loss_crf_workers=0)
DIRECT = dict(scales=(1.0,), base_size=None, flip=False, window=512, crf=None)  # one window, one view


def make(**kwargs):
    torch.manual_seed(0)
    return WeakCLIPRefiner(class_names=NAMES, **{**TINY, **kwargs})


def smooth_images(b=2, h=64, w=80, seed=0):
    """Piecewise-constant pictures (a CRF on noise is meaningless and slow)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, h // 16, w // 16, generator=g)
    return F.interpolate(coarse, size=(h, w), mode="nearest")


@pytest.fixture(scope="module")
def direct():
    return make(**DIRECT).eval()


# --------------------------------------------------------------------------- windows and scales
def test_window_grid_is_mmsegs():
    assert window_starts(683, 512, 341) == [0, 171]
    assert window_starts(1195, 512, 341) == [0, 341, 682, 683]
    assert window_starts(300, 512, 341) == [0]
    assert window_boxes(300, 600, 512, 341) == [(0, 0, 300, 512), (0, 88, 300, 600)]


def test_official_scales_of_a_voc_image_give_52_windows():
    """docs/methods.md: a 375x500 VOC image makes 52 windows over the official scales (the official code
    encodes the text again for each)."""
    assert scaled_size(375, 500, 1.0) == (512, 683)
    assert scaled_size(375, 500, 0.5) == (256, 341)
    sizes = [scaled_size(375, 500, r) for r in OFFICIAL_SCALES]
    assert 2 * sum(len(window_boxes(h, w, 512, 341)) for h, w in sizes) == 52
    assert scaled_size(375, 500, 0.5, base_size=None) == (188, 250)


def test_overlapping_windows_average_to_the_whole_image_for_a_pointwise_network():
    conv = torch.nn.Conv2d(3, 4, 1)
    images = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        slid = slide_logits(conv, images, window=32, stride=21, batch_size=5)
        torch.testing.assert_close(slid, conv(images), rtol=1e-5, atol=1e-6)


def test_multiscale_inference_equals_a_direct_forward_when_one_window_covers_the_image(direct):
    images = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        logits = direct.net(images)["logits"]
        expected = F.interpolate(logits, size=(64, 80), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(direct.refine(images, None, None), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(direct.probabilities(images), expected, rtol=1e-5, atol=1e-6)


def test_flip_averaging_is_mirror_symmetric():
    refiner = make(scales=(1.0, 0.75), base_size=None, flip=True, window=512, crf=None).eval()
    images = torch.rand(1, 3, 64, 96)
    a = refiner.refine(images, None, None)
    b = refiner.refine(images.flip(-1), None, None).flip(-1)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_text_is_encoded_once_per_refine_not_per_window():
    refiner = make(scales=(1.0, 0.75), base_size=None, flip=True, window=32, stride=21, window_batch=2, crf=None)
    calls = {"text": 0, "net": 0}
    prompt_forward, net_forward = refiner.net.prompt.forward, refiner.net.forward

    def counted_prompt(*args, **kwargs):
        calls["text"] += 1
        return prompt_forward(*args, **kwargs)

    def counted_net(*args, **kwargs):
        calls["net"] += 1
        return net_forward(*args, **kwargs)

    refiner.net.prompt.forward, refiner.net.forward = counted_prompt, counted_net
    refiner.refine(torch.rand(2, 3, 64, 64), None, None)
    assert calls["net"] > 10 and calls["text"] == 1
    refiner.refine(torch.rand(1, 3, 48, 64), None, None)
    assert calls["text"] <= 2


# --------------------------------------------------------------------------- outputs
def test_probabilities_sum_to_one_at_two_sizes(direct):
    for h, w in ((64, 80), (48, 48)):
        probs = direct.refine(torch.rand(2, 3, h, w), torch.zeros(2, h, w, dtype=torch.long), torch.ones(2, 3))
        assert probs.shape == (2, 4, h, w) and probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(1), torch.ones(2, h, w))


@needs_crf
def test_the_crf_runs_over_the_classes_present_in_the_argmax():
    probs = torch.zeros(2, 4, 32, 32)
    probs[:, 0] = 0.5
    probs[:, 2, :, :16] = 0.6      # class 2 wins on the left half
    probs[:, 3] = 0.1              # never wins: dropped
    probs = probs / probs.sum(1, keepdim=True)
    out = crf_over_predicted_classes(probs, smooth_images(2, 32, 32), "weakclip_voc", workers=0)
    assert torch.all(out[:, [1, 3]] == 0)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 32, 32))
    refiner = make(scales=(1.0,), base_size=None, flip=False, crf="weakclip_voc")
    refined = refiner.refine(smooth_images(), None, None)
    torch.testing.assert_close(refined.sum(1), torch.ones(2, 64, 80))


def test_restrict_to_labels_sets_255_exactly_where_the_class_is_not_in_the_label():
    masks = torch.tensor([[[0, 1, 2], [3, 2, 0]]])
    labels = torch.tensor([[0.0, 1.0, 0.0]])          # class 2 only (mask value 2)
    expected = torch.tensor([[[0, 255, 2], [255, 2, 0]]])
    assert torch.equal(restrict_to_labels(masks, labels), expected)

    free = make(**DIRECT).eval()
    strict = make(**DIRECT, restrict_to_labels=True).eval()
    images, labels = torch.rand(2, 3, 64, 80), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    argmax = free.refine(images, None, labels).argmax(1)
    got = strict.refine(images, None, labels)
    assert got.dtype == torch.int64 and got.shape == (2, 64, 80)
    allowed = torch.cat([torch.ones(2, 1), labels], 1).bool()
    inside = torch.gather(allowed, 1, argmax.flatten(1)).view_as(argmax)
    assert torch.equal(got == 255, ~inside)
    assert torch.equal(got[inside], argmax[inside])


def test_the_paper_preset_restricts_to_labels_and_official_does_not():
    assert make(preset="paper", **DIRECT).restrict_to_labels
    assert not make(**DIRECT).restrict_to_labels
    assert not make(preset="paper", restrict_to_labels=False, **DIRECT).restrict_to_labels


# --------------------------------------------------------------------------- bad input
def test_seed_masks_of_another_size_or_with_absent_classes_name_the_image():
    images, labels = torch.rand(2, 3, 32, 32), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"seed masks are 16x32 but the images are 32x32 \(image 'a'"):
        check_seed_batch(torch.zeros(2, 16, 32, dtype=torch.long), images, labels, ["a", "b"])
    seeds = torch.zeros(2, 32, 32, dtype=torch.long)
    seeds[1, :4, :4] = 3
    with pytest.raises(ValueError, match=r"seed mask of image 'b' has class\(es\) \[3\] that its labels do not have"):
        check_seed_batch(seeds, images, labels, ["a", "b"])
    seeds[1, :4, :4] = 9
    with pytest.raises(ValueError, match=r"image 1 of the batch holds values \[9\] outside 0..3"):
        check_seed_batch(seeds, images, labels)
    seeds[1, :4, :4] = 255                           # ignore is fine
    assert torch.equal(check_seed_batch(seeds, images, labels), seeds)


def test_training_step_refuses_bad_seeds_before_running_the_network(direct):
    batch = {"image": torch.rand(2, 3, 32, 32), "target": torch.zeros(2, 32, 32, dtype=torch.long),
             "labels": torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), "name": ["img_a", "img_b"]}
    batch["target"][0, 0, 0] = 2
    with pytest.raises(ValueError, match="seed mask of image 'img_a' has class"):
        direct.training_step(batch)


def test_refine_checks_its_inputs(direct):
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="batch size and H x W must agree"):
        direct.refine(images, torch.zeros(2, 16, 32, dtype=torch.long), None)
    with pytest.raises(ValueError, match=r"labels must be \(B, C\) = \(2, 3\)"):
        direct.refine(images, None, torch.ones(2, 5))
    with pytest.raises(ValueError, match="images must be float"):
        direct.refine(images[0], None, None)


def test_class_names_come_from_the_dataset_with_background_first():
    from wsss_kit.data import VOC_CLASSES

    assert make(**DIRECT).class_names == ("background",) + NAMES
    voc = WeakCLIPRefiner(dataset="voc", **TINY, **DIRECT)
    assert voc.class_names == ("background",) + tuple(VOC_CLASSES) and voc.num_classes == 20
    with pytest.raises(ValueError, match="needs the class names"):
        WeakCLIPRefiner(**TINY)
    with pytest.raises(ValueError, match="'background' is added as class 0"):
        WeakCLIPRefiner(class_names=("background",) + NAMES, **TINY)
    with pytest.raises(ValueError, match="3 names but num_classes=4"):
        WeakCLIPRefiner(class_names=NAMES, num_classes=4, **TINY)


def test_a_checkpoint_for_other_classes_is_refused(tmp_path, direct):
    path = tmp_path / "refiner.pt"
    torch.save(direct.state_dict(), path)
    other = WeakCLIPRefiner(class_names=("ball", "box", "boat"), **TINY, **DIRECT)
    with pytest.raises(ValueError, match=r"trained for 4 classes \['background', 'ball', 'box', 'kite'\] but this "
                                         r"refiner has 4: \['background', 'ball', 'box', 'boat'\]"):
        other.load_weights(path)
    with pytest.raises(ValueError, match="trained for 4 classes"):
        other.load_state_dict(torch.load(path, weights_only=True))
    fewer = WeakCLIPRefiner(class_names=("ball", "box"), **TINY, **DIRECT)
    with pytest.raises(ValueError, match="trained for 4 classes .* but this refiner has 3"):
        fewer.load_weights(path)


def test_a_checkpoint_round_trips_through_the_pipelines_loader(tmp_path, direct):
    from wsss_kit.weights import load_state_dict, load_weights_into

    path = tmp_path / "model.pt"
    torch.save(direct.state_dict(), path)
    assert not any(k.startswith("net.encoder.clip.") for k in direct.state_dict())  # CLIP is not saved
    images = torch.rand(1, 3, 48, 48)
    fresh = make(**DIRECT).eval()   # the same random CLIP (built under the same seed), other trained parts
    with torch.no_grad():
        for p in fresh.param_groups(1.0)[-1]["params"]:
            p.add_(0.5)
    assert not torch.allclose(fresh.refine(images, None, None), direct.refine(images, None, None))
    load_weights_into(fresh, load_state_dict(path))
    torch.testing.assert_close(fresh.refine(images, None, None), direct.refine(images, None, None))
    torch.manual_seed(0)
    again = WeakCLIPRefiner(class_names=NAMES, checkpoint=str(path), **TINY, **DIRECT).eval()
    torch.testing.assert_close(again.refine(images, None, None), direct.refine(images, None, None))


def test_config_keywords_include_the_network_settings():
    validate({"type": "refiners/weakclip", "preset": "paper", "n_context": 16, "crf": "weakclip_coco"}, "refiner")
    with pytest.raises(ConfigError, match=r"refiner\.n_contxt: refiners/weakclip has no keyword 'n_contxt'.*"
                                          r"did you mean 'n_context'"):
        validate({"type": "refiners/weakclip", "n_contxt": 16}, "refiner")
    refiner = wsss_kit.create("refiners", "weakclip", class_names=NAMES, preset="table5_n16",
                              **{**TINY, "n_context": 16})
    assert refiner.net.prompt.context.shape[0] == 16 and refiner.trainable


# --------------------------------------------------------------------------- training
@needs_crf
@pytest.mark.parametrize("preset", ["official", "paper"])
def test_training_step_gradients_reach_trainable_parameters_only(preset):
    refiner = make(preset=preset).train()
    images = smooth_images(2, 64, 64)
    seeds = torch.zeros(2, 64, 64, dtype=torch.long)
    seeds[:, 20:40, 20:40] = 1
    seeds[:, :8] = 255
    out = refiner.training_step({"image": images, "target": seeds, "labels": torch.tensor([[1.0, 0, 0]] * 2)})
    assert set(out) == {"loss", "seed", "boundary", "score_map"}
    expected = out["seed"] + out["boundary"] + 0.4 * out["score_map"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    trainable = {n for n, p in refiner.named_parameters() if p.requires_grad}
    got_grad = {n for n, p in refiner.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got_grad <= trainable
    assert not any(n.startswith("net.encoder.clip.") for n in trainable)
    assert any(n.startswith("net.prompt.") for n in got_grad) and any(n.startswith("net.decoder.") for n in got_grad)
    if preset == "paper":   # chained co-attention, trained adapter: every trainable parameter learns
        assert any(n.startswith("net.adapter.") for n in got_grad)
        missing = sorted(trainable - got_grad)
        assert not missing, missing
    else:                   # official: the adapter stays at its initialisation
        assert not any(n.startswith("net.adapter.") for n in trainable)
    groups = refiner.param_groups(1e-4)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for n, p in refiner.named_parameters()
                                                             if n in trainable}


def test_training_step_without_the_crf_term_and_its_weights():
    refiner = make(boundary_loss_weight=0.0, score_map_loss_weight=1.0).train()
    seeds = torch.ones(2, 32, 32, dtype=torch.long)
    out = refiner.training_step({"image": torch.rand(2, 3, 32, 32), "target": seeds})
    assert "boundary" not in out
    torch.testing.assert_close(out["loss"].detach(), out["seed"] + out["score_map"])
    with pytest.raises(ValueError, match="loss weights"):
        make(seed_loss_weight=0, boundary_loss_weight=0, score_map_loss_weight=0)


def test_determinism_under_a_seed():
    a, b = make(boundary_loss_weight=0.0, **DIRECT), make(boundary_loss_weight=0.0, **DIRECT)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], torch.Tensor))
    batch = {"image": torch.rand(2, 3, 32, 32), "target": torch.zeros(2, 32, 32, dtype=torch.long)}
    losses = []
    for refiner in (a, b):
        torch.manual_seed(7)   # dropout in the matching and the decoder
        losses.append(refiner.train().training_step(batch)["loss"].item())
    assert losses[0] == losses[1]
    images = torch.rand(1, 3, 40, 56)
    assert torch.equal(a.refine(images, None, None), b.refine(images, None, None))


def test_a_preset_without_trainable_parts_says_so():
    refiner = make(preset="table4_direct_clip", **DIRECT)
    assert refiner.trainable is False and WeakCLIPRefiner.trainable is True


def test_multiscale_softmax_checks_scales():
    with pytest.raises(ValueError, match="scales must be positive"):
        multiscale_softmax(lambda x: x, torch.rand(1, 3, 8, 8), scales=(1.0, 0.0), base_size=None)
    with pytest.raises(ValueError, match="stride <= window"):
        make(window=100, stride=200)
    assert np.isclose(sum(OFFICIAL_SCALES), 6.75)


# --------------------------------------------------------------------------- in a pipeline
@needs_crf
def test_the_pipeline_trains_the_refiner_on_the_seeds_and_loads_it_for_the_pseudo_masks(tmp_path):
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.config import apply_overrides, parse_config
    from wsss_kit.pipeline import run_pipeline

    cfg = parse_config(demo_config_path().read_text(), source="demo.yaml")
    cfg = apply_overrides(cfg, [
        "data.train.num_images=8", "data.train.image_size=64", "data.eval.num_images=4", "data.eval.image_size=64",
        "cam.augment.crop_size=64", "cam.train.steps=2", "cam.train.batch_size=4", "cam.infer.scales=[1.0]",
        "refiner={type: refiners/weakclip, clip_model: wsss-tiny-clip, clip_weights: null, n_context: 2, "
        "scales: [1.0], base_size: null, flip: false, crf: weakclip_voc, crf_workers: 0, loss_crf_workers: 0}",
        "refiner_train={steps: 2, batch_size: 2, lr: 1.0e-4, optimizer: adamw, weight_decay: 3.0e-5}",
        "refiner_augment={crop_size: 64, scale_range: [0.5, 2.0]}",
    ])
    stages = run_pipeline(cfg, tmp_path, stages=["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"])
    assert stages["train_refiner"]["steps"] == 2 and not stages["train_refiner"].get("skipped")
    state = torch.load(tmp_path / "train_refiner" / "model.pt", weights_only=True)
    assert state["_extra_state"]["class_names"][0] == "background" and len(state["_extra_state"]["class_names"]) == 6
    assert not any(k.startswith("net.encoder.clip.") for k in state)
    assert len(list((tmp_path / "pseudo_masks" / "train").glob("*.png"))) == 8
    assert 0.0 <= stages["pseudo_masks"]["eval"]["miou"] <= 1.0


def test_a_preset_with_nothing_to_train_makes_pseudo_masks_without_a_checkpoint(tmp_path):
    """Table 4's "fixed CLIP, direct matching" row: the refiner type is trainable, this preset freezes every
    part; train_refiner records "nothing to train" and pseudo_masks uses the refiner as built."""
    from wsss_kit.cli.main import demo_config_path
    from wsss_kit.config import apply_overrides, parse_config
    from wsss_kit.pipeline import run_pipeline

    cfg = parse_config(demo_config_path().read_text(), source="demo.yaml")
    cfg = apply_overrides(cfg, [
        "data.train.num_images=4", "data.train.image_size=64", "data.eval.num_images=2", "data.eval.image_size=64",
        "cam.augment.crop_size=64", "cam.train.steps=1", "cam.train.batch_size=2", "cam.infer.scales=[1.0]",
        "refiner={type: refiners/weakclip, preset: table4_direct_clip, clip_model: wsss-tiny-clip, clip_weights: null, "
        "scales: [1.0], base_size: null, flip: false, crf: weakclip_voc, crf_workers: 0, loss_crf_workers: 0}",
        "refiner_train={steps: 2, batch_size: 2, lr: 1.0e-4, optimizer: adamw, weight_decay: 3.0e-5}",
        "refiner_augment={crop_size: 64, scale_range: [0.5, 2.0]}",
    ])
    stages = run_pipeline(cfg, tmp_path, stages=["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"])
    assert stages["train_refiner"]["skipped"] and "nothing to train" in stages["train_refiner"]["reason"]
    assert not (tmp_path / "train_refiner" / "model.pt").exists()
    assert len(list((tmp_path / "pseudo_masks" / "train").glob("*.png"))) == 4
    assert 0.0 <= stages["pseudo_masks"]["eval"]["miou"] <= 1.0
