"""Converters from the official checkpoint layouts, checked against reference forwards written in the
official order of operations (see deeplab_official_layouts.py)."""

from __future__ import annotations

import pytest
import torch
from deeplab_official_layouts import (
    TINY_V2,
    TINY_WR38,
    deeplab_v2_msc_reference,
    kazuto_state,
    resnet38_seg_reference,
    resnet38_state,
)

from wsss_deeplab import (
    DeepLabV1WR38,
    DeepLabV2R101,
    convert_deeplab_v2_kazuto1011,
    convert_mctformer_resnet38_seg,
    convert_resnet38_imagenet,
)
from wsss_kit.errors import WeightsError
from wsss_kit.weights import CONVERTERS, get_converter, load_weights_into

HEAD_KW = {k: v for k, v in TINY_WR38.items()}


def test_converters_are_registered():
    assert get_converter("psa_resnet38") is convert_resnet38_imagenet
    assert get_converter("mctformer_resnet38_seg") is convert_mctformer_resnet38_seg
    assert get_converter("deeplab_v2_kazuto1011") is convert_deeplab_v2_kazuto1011
    assert {"psa_resnet38", "mctformer_resnet38_seg", "deeplab_v2_kazuto1011"} <= set(CONVERTERS)


# ---------------------------------------------------------------- ResNet38 / DeepLabV1
@pytest.mark.parametrize("num_classes", [2, 5])
def test_mctformer_seg_network_matches_the_official_forward(num_classes, tmp_path):
    official = resnet38_state(num_classes=num_classes, counters=True)
    model = DeepLabV1WR38(num_classes, **HEAD_KW)
    load_weights_into(model, convert_mctformer_resnet38_seg(official, num_classes=num_classes), strict=True)
    images = torch.rand(2, 3, 37, 29)
    with torch.no_grad():
        assert torch.allclose(model.eval()(images), resnet38_seg_reference(official, images), atol=1e-5)
    # the same through a file, with DataParallel's module. prefix
    path = tmp_path / "resnet38_seg.pth"
    torch.save({f"module.{k}": v for k, v in official.items()}, path)
    from_file = DeepLabV1WR38(num_classes, checkpoint=path, **HEAD_KW).eval()
    with torch.no_grad():
        assert torch.allclose(from_file(images), resnet38_seg_reference(official, images), atol=1e-5)


def test_imagenet_layout_loads_the_backbone_strictly(tmp_path):
    official = resnet38_state()  # no counters (MXNet origin), no head
    official["linear1000.weight"] = torch.zeros(1000, 48)  # an unconverted ImageNet classifier is dropped
    converted = convert_resnet38_imagenet(official)
    assert all(k.startswith("backbone.") for k in converted)
    assert converted["backbone.stages.0.1.norm1.num_batches_tracked"].item() == 0
    assert torch.equal(converted["backbone.stem.weight"], official["conv1a.weight"])
    assert torch.equal(converted["backbone.stages.2.1.conv2.weight"], official["b4_1.conv_branch2b1.weight"])
    assert torch.equal(converted["backbone.stages.5.0.conv3.weight"], official["b7.conv_branch2b2.weight"])
    assert torch.equal(converted["backbone.norm_out.running_var"], official["bn7.running_var"])
    path = tmp_path / "ilsvrc-cls_rna-a1_cls1000_ep-0001.pth"
    torch.save(official, path)
    torch.manual_seed(0)
    model = DeepLabV1WR38(3, weights=path, **HEAD_KW).eval()
    ref_state = {**official,
                 "fc8_seg_conv1.weight": model.head.conv1.weight, "fc8_seg_conv1.bias": model.head.conv1.bias,
                 "fc8_seg_conv2.weight": model.head.conv2.weight, "fc8_seg_conv2.bias": model.head.conv2.bias}
    images = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.allclose(model(images), resnet38_seg_reference(ref_state, images), atol=1e-5)


def test_resnet38_errors_name_the_problem(tmp_path):
    seg = resnet38_state(num_classes=21, counters=True)
    with pytest.raises(WeightsError, match="21 classes.*num_classes=5"):
        convert_mctformer_resnet38_seg(seg, num_classes=5)
    with pytest.raises(WeightsError, match="not the ImageNet initialisation.*checkpoint="):
        convert_resnet38_imagenet(seg)
    with pytest.raises(WeightsError, match="no segmentation layers"):
        convert_mctformer_resnet38_seg(resnet38_state())
    with pytest.raises(WeightsError, match="DeepLabV2"):
        convert_mctformer_resnet38_seg(kazuto_state())
    cls_net = {**resnet38_state(), "fc8.weight": torch.zeros(20, 48, 1, 1)}
    with pytest.raises(WeightsError, match="fc8.weight.*classification"):
        convert_resnet38_imagenet(cls_net)
    # another depth than the model's: strict loading names the keys
    path = tmp_path / "deeper.pth"
    torch.save(resnet38_state(cfg={**TINY_WR38, "depths": (2, 1, 3, 2)}, num_classes=3), path)
    with pytest.raises(WeightsError, match="unexpected keys: backbone.stages.2.2"):
        DeepLabV1WR38(3, checkpoint=path, **HEAD_KW)
    with pytest.raises(WeightsError, match="hub tag"):
        DeepLabV1WR38(3, weights="timm:resnet50.tv_in1k", **HEAD_KW)


def test_plugin_layout_round_trips():
    model = DeepLabV1WR38(3, **HEAD_KW)
    state = model.state_dict()
    assert convert_mctformer_resnet38_seg(state, num_classes=3).keys() == state.keys()
    assert set(convert_resnet38_imagenet(state)) == {k for k in state if k.startswith("backbone.")}


# ---------------------------------------------------------------- kazuto1011 / DeepLabV2
def _tiny_v2(num_classes: int = 4, **kwargs) -> DeepLabV2R101:
    torch.manual_seed(0)
    return DeepLabV2R101(num_classes, backbone_kwargs=TINY_V2, **kwargs)


@pytest.mark.parametrize("num_classes", [3, 4])
def test_trained_msc_checkpoint_matches_the_official_forward(num_classes, tmp_path):
    official = kazuto_state(num_classes=num_classes)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(official, path)
    model = _tiny_v2(num_classes, checkpoint=path)
    images = torch.rand(2, 3, 49, 37)
    reference = deeplab_v2_msc_reference(official, images)
    outs = model.train()(images)  # BN stays frozen in training, so the outputs are comparable
    assert len(outs) == len(reference)
    for got, want in zip(outs, reference):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        fused = model.eval()(images)
    want = torch.nn.functional.interpolate(reference[-1], size=(49, 37), mode="bilinear", align_corners=False)
    assert torch.allclose(fused, want, atol=1e-4, rtol=1e-4)


def test_coco_init_loads_the_backbone_and_drops_its_classifier(tmp_path):
    coco = kazuto_state(num_classes=None, prefix="", coco_fc=91, counters=False)
    path = tmp_path / "deeplabv1_resnet101-coco.pth"
    torch.save(coco, path)
    model = _tiny_v2(3, weights=path)
    assert torch.equal(model.backbone.conv1.weight, coco["layer1.conv1.conv.weight"])
    assert torch.equal(model.backbone.layer2[0].downsample[1].running_var,
                       coco["layer3.block1.shortcut.bn.running_var"])
    assert torch.equal(model.backbone.layer3[0].conv2.weight, coco["layer4.block1.conv3x3.conv.weight"])
    assert model.aspp.convs[0].weight.std() < 0.02  # the ASPP keeps its N(0, 0.01) initialisation
    with pytest.raises(WeightsError, match="without an ASPP.*weights="):
        _tiny_v2(3, checkpoint=path)


def test_pre_2019_layout_converts():
    old = kazuto_state(num_classes=3, prefix="scale.", shortcut="proj", aspp_stages=True)
    new = kazuto_state(num_classes=3)
    a, b = convert_deeplab_v2_kazuto1011(old), convert_deeplab_v2_kazuto1011(new)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deeplab_v2_errors_name_the_problem(tmp_path):
    with pytest.raises(WeightsError, match="4 classes.*num_classes=21"):
        convert_deeplab_v2_kazuto1011(kazuto_state(num_classes=4), num_classes=21)
    with pytest.raises(WeightsError, match="ResNet38"):
        convert_deeplab_v2_kazuto1011(resnet38_state())
    bad = {**kazuto_state(), "base.aspp.imagepool.conv.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match="DeepLabV3"):
        convert_deeplab_v2_kazuto1011(bad)
    path = tmp_path / "coco.pth"
    torch.save(kazuto_state(num_classes=None, prefix="", coco_fc=91), path)
    with pytest.raises(WeightsError, match="style='caffe'"):
        _tiny_v2(3, weights=path, style="pytorch")
    torchvision_like = {k[len("backbone."):]: v for k, v in _tiny_v2().state_dict().items()
                        if k.startswith("backbone.")}
    tv_path = tmp_path / "resnet_tv.pth"
    torch.save(torchvision_like, tv_path)
    with pytest.raises(WeightsError, match="style='pytorch'"):
        _tiny_v2(3, weights=tv_path)
    model = _tiny_v2(3, weights=tv_path, style="pytorch")  # the torchvision layout loads with style='pytorch'
    assert torch.equal(model.backbone.conv1.weight, torchvision_like["conv1.weight"])


def test_deeplab_v2_plugin_layout_round_trips(tmp_path):
    model = _tiny_v2(3)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    again = _tiny_v2(3, checkpoint=path)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
