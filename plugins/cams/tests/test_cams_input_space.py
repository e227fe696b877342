"""``input_space``: every CAM network of wsss_cams gives the same outputs for images in [0, 1] and for
the same images pre-normalised with its own mean/std (``input_space="normalized"``)."""

from __future__ import annotations

import pytest
import torch

import wsss_kit
from wsss_cams import ResNetCAM
from wsss_cams.mctformer import MCTformerV1, MCTformerV2

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def _images(h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))


def _pair(build, **kwargs):
    torch.manual_seed(0)
    unit = build(input_space="unit", **kwargs)
    torch.manual_seed(0)
    normalized = build(input_space="normalized", **kwargs)
    for (name, a), b in zip(unit.state_dict().items(), normalized.state_dict().values()):
        assert torch.equal(a, b), name
    return unit, normalized


def _resnet(**kw):
    return ResNetCAM(3, backbone="test_resnet", **kw)


def _v1(**kw):
    return MCTformerV1(3, backbone="test_vit", img_size=64, **kw)


def _v2(**kw):
    return MCTformerV2(3, backbone="test_vit", img_size=64, **kw)


@pytest.mark.parametrize("build", [_resnet, _v1, _v2], ids=["resnet_cam", "mctformer_v1", "mctformer_v2"])
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_normalized_images_give_the_unit_outputs(build, size) -> None:
    unit, normalized = _pair(build)
    unit.eval(), normalized.eval()
    images = _images(*size)
    pre = (images - unit.mean) / unit.std  # the network's own mean/std, as an official loader feeds it
    assert torch.allclose(pre, (images - MEAN) / STD)
    with torch.no_grad():
        a, b = unit(images, LABELS), normalized(pre, LABELS)
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
        cams_a = unit.cams(images, LABELS, scales=(1.0, 0.5), flip=True)
        cams_b = normalized.cams(pre, LABELS, scales=(1.0, 0.5), flip=True)
    # resizing normalised vs unit images rounds differently (~1e-7); the random tiny ViT's nearly flat
    # maps (range ~4e-3) are min-max normalised, which magnifies that to ~2e-4
    assert torch.allclose(cams_a, cams_b, atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(unit.raw_cams(images), normalized.raw_cams(pre), atol=1e-5, rtol=1e-4)
    # the switch matters: unit images fed as if normalised give other outputs
    with torch.no_grad():
        assert not torch.allclose(normalized(images)["logits"], a["logits"], atol=1e-3)


def test_resnet_cam_in_training_mode_with_batch_statistics() -> None:
    unit, normalized = _pair(_resnet, fixed_bn=False, freeze_stem=False)
    images = _images()
    pre = (images - MEAN) / STD
    a, b = unit(images, LABELS), normalized(pre, LABELS)
    assert torch.allclose(a["loss"], b["loss"], atol=1e-5)
    a["loss"].backward()
    b["loss"].backward()
    ga, gb = unit.classifier.weight.grad, normalized.classifier.weight.grad
    assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, kwargs", [
    ("resnet_cam", {"backbone": "test_resnet"}),
    ("mctformer_v1", {"backbone": "test_vit", "img_size": 64}),
    ("mctformer_v2", {"backbone": "test_vit", "img_size": 64}),
])
def test_registry_passes_the_switch_and_bad_values_list_the_choices(name, kwargs) -> None:
    model = wsss_kit.create("cams", name, num_classes=3, input_space="normalized", **kwargs)
    assert model.input_space == "normalized"
    assert "input_space='normalized'" in repr(model) or name != "resnet_cam"
    with pytest.raises(ValueError, match=r"input_space must be one of 'unit', 'normalized'.*got 'imagenet'"):
        wsss_kit.create("cams", name, num_classes=3, input_space="imagenet", **kwargs)
