"""``input_space="normalized"``: WeakCLIP fed images already normalised with CLIP's mean/std, as the
official data loaders give them, gives what it gives for the same images in [0, 1].

Tiny random CLIP (``wsss-tiny-clip``) on CPU; nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from crf_available import HAVE_PYDENSECRF, needs_crf  # noqa: F401 (same folder)

from wsss_kit.clip import TINY_CLIP, load_clip
from wsss_weakclip import WeakCLIPNet
from wsss_weakclip.refiner import WeakCLIPRefiner

NAMES = ("ball", "box", "kite")
TINY = dict(clip_model=TINY_CLIP, clip_weights=None, n_context=2, crf_workers=0, loss_crf_workers=0,
            matching_width=16, decoder_channels=8)
DIRECT = dict(scales=(1.0,), base_size=None, flip=False, window=512)


def make(**kwargs):
    torch.manual_seed(0)
    return WeakCLIPRefiner(class_names=NAMES, **{**TINY, **kwargs})


def smooth_images(b=2, h=64, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(b, 3, h // 16, w // 16, generator=g), size=(h, w), mode="nearest")


@pytest.mark.parametrize("preset, extra", [("official", {}), ("paper", {}), ("table4_coattn", {}),
                                           ("paper", {"pos_base_size": None})])  # the last: CLIP's dense_features
def test_network_on_normalised_images_equals_the_network_on_unit_images(preset, extra):
    clip = load_clip(TINY_CLIP, normalization="imagenet", pos_interpolation="bilinear", precision="fp32")
    torch.manual_seed(0)
    unit_net = WeakCLIPNet(("background",) + NAMES, clip_model=clip, preset=preset, matching_width=16,
                           decoder_channels=8, **extra).eval()
    torch.manual_seed(0)
    norm_net = WeakCLIPNet(("background",) + NAMES, clip_model=clip, preset=preset, matching_width=16,
                           decoder_channels=8, input_space="normalized", **extra).eval()
    assert unit_net.encoder.custom_forward == (not extra)
    x = smooth_images()
    normalized = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = unit_net(x), norm_net(normalized)
        wrong = norm_net(x)  # unit images declared normalised: another input
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["score_map"], b["score_map"])
    assert not torch.allclose(a["score_map"], wrong["score_map"])


def test_refiner_settings_follow_the_preset():
    assert make().loss_crf_image == "official" and make().input_space == "unit"
    assert make(preset="paper").loss_crf_image == "rounded"
    assert make(preset="paper", loss_crf_image="official").loss_crf_image == "official"
    assert make(preset="table5_n4").loss_crf_image == "official"
    assert make().normalization() == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the spec, not float32
    assert "input_space='unit'" in repr(make()) and "loss_crf_image='official'" in repr(make())
    with pytest.raises(ValueError, match="loss_crf_image must be one of 'official', 'rounded' or None"):
        make(loss_crf_image="truncate")
    with pytest.raises(ValueError, match="input_space must be one of 'unit', 'normalized'.*got 'imagenet'"):
        make(input_space="imagenet")


@needs_crf
@pytest.mark.parametrize("preset", ["official", "paper"])
def test_training_step_on_normalised_images_equals_unit_images(preset):
    unit_ref, norm_ref = make(preset=preset), make(preset=preset, input_space="normalized")
    norm_ref.load_state_dict(unit_ref.state_dict())
    x = smooth_images(2, 64, 64)
    normalized = unit_ref.net.clip.normalize(x)
    seeds = torch.zeros(2, 64, 64, dtype=torch.long)
    seeds[:, 20:40, 20:40] = 1
    seeds[:, :4] = 255
    labels = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    torch.manual_seed(1)
    a = unit_ref.training_step({"image": x, "target": seeds, "labels": labels})
    torch.manual_seed(1)
    b = norm_ref.training_step({"image": normalized, "target": seeds, "labels": labels})
    for key in ("loss", "seed", "boundary", "score_map"):
        assert torch.equal(a[key], b[key]), key


@needs_crf
def test_refine_on_normalised_images_equals_unit_images():
    unit_ref, norm_ref = make(**DIRECT).eval(), make(**DIRECT, input_space="normalized").eval()
    norm_ref.load_state_dict(unit_ref.state_dict())
    x = smooth_images(1, 48, 64, seed=3)
    normalized = unit_ref.net.clip.normalize(x)
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    a, b = unit_ref.refine(x, None, labels), norm_ref.refine(normalized, None, labels)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
