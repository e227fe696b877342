"""heads/deeplab_v1_wr38 and heads/deeplab_v2_r101 on tiny networks of the published structure: shapes,
frozen BatchNorm and stem, gradients, parameter groups, determinism, errors."""

from __future__ import annotations

import pytest
import torch
from deeplab_official_layouts import TINY_V2, TINY_WR38

import wsss_kit
from wsss_deeplab import DeepLabV1WR38, DeepLabV2R101, msc_loss
from wsss_kit.batchnorm import batchnorm_layers
from wsss_kit.engine import TrainConfig
from wsss_kit.engine.trainer import build_optimizer

SIZES = [(33, 47), (40, 24)]


def tiny_v1(num_classes: int = 3, **kwargs) -> DeepLabV1WR38:
    torch.manual_seed(0)
    return DeepLabV1WR38(num_classes, **TINY_WR38, **kwargs)


def tiny_v2(num_classes: int = 3, **kwargs) -> DeepLabV2R101:
    torch.manual_seed(0)
    return DeepLabV2R101(num_classes, backbone_kwargs=TINY_V2, **kwargs)


# ---------------------------------------------------------------- DeepLabV1-WR38
@pytest.mark.parametrize("size", SIZES)
def test_v1_logits_at_the_input_size(size):
    model = tiny_v1().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size) and out.dtype == torch.float32
    feats = model.features(torch.rand(1, 3, *size))
    assert feats.shape[-2:] == tuple(-(-s // 8) for s in size)  # output stride 8, rounded up
    assert feats.shape[1] == TINY_WR38["bottleneck_widths"][-1]


def test_v1_published_sizes():
    model = DeepLabV1WR38(21)
    assert model.backbone.out_channels == 4096
    assert model.head.conv1.weight.shape == (512, 4096, 3, 3) and model.head.conv1.dilation == (12, 12)
    assert model.head.conv2.weight.shape == (21, 512, 3, 3) and model.head.conv2.padding == (12, 12)
    assert [len(s) for s in model.backbone.stages] == [3, 3, 6, 3, 1, 1]
    assert model.backbone.stages[3][0].conv1.dilation == (1, 1) and model.backbone.stages[3][0].conv2.dilation == (2, 2)
    assert model.backbone.stages[4][0].conv2.dilation == (4, 4) and model.backbone.stages[5][0].drop2.p == 0.5


def test_v1_frozen_bn_and_stem_get_no_gradient_and_the_rest_does():
    model = tiny_v1()
    model.train()
    assert all(not bn.training for bn in batchnorm_layers(model)), "model.train() must keep BN in eval mode"
    assert model.backbone.stages[4][0].drop2.training, "dropout stays active in training"
    images, target = torch.rand(2, 3, 33, 47), torch.randint(0, 3, (2, 33, 47))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    wsss_kit.create("losses", "cross_entropy")(model(images), target).backward()
    for name, p in model.named_parameters():
        frozen = name.startswith("backbone.stem") or ".norm" in name
        assert p.requires_grad != frozen, name
        if frozen:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "running stats moved"


def test_v1_unfrozen_options_train_bn_and_stem():
    model = tiny_v1(freeze_bn=False, freeze_stem=False).train()
    assert all(bn.training for bn in batchnorm_layers(model))
    assert all(p.requires_grad for p in model.parameters())


def test_v1_param_groups_and_optimizer():
    model = tiny_v1()
    groups = model.param_groups(7e-4)
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == trainable
    opt = build_optimizer(model, TrainConfig(steps=1, lr=7e-4))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([7e-4, 7e-3])


def test_v1_deterministic_under_a_seed():
    images = torch.rand(1, 3, 30, 26)
    a, b = tiny_v1().eval(), tiny_v1().eval()
    with torch.no_grad():
        assert torch.equal(a(images), b(images))
        assert torch.equal(a(images), a(images))


def test_v1_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        DeepLabV1WR38(1, **TINY_WR38)
    with pytest.raises(ValueError, match="four"):
        DeepLabV1WR38(3, **{**TINY_WR38, "depths": (1, 1, 1)})
    with pytest.raises(ValueError, match="divisible by 4"):
        DeepLabV1WR38(3, **{**TINY_WR38, "bottleneck_widths": (30, 48)})
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_v1()(torch.rand(1, 1, 16, 16))


def test_v1_built_through_the_registry():
    head = wsss_kit.create("heads", "deeplab_v1_wr38", num_classes=4, **TINY_WR38)
    assert isinstance(head, DeepLabV1WR38) and isinstance(head, wsss_kit.RetrainHead)


# ---------------------------------------------------------------- DeepLabV2-R101
@pytest.mark.parametrize("size", SIZES)
def test_v2_shapes_in_eval_and_training(size):
    model = tiny_v2().eval()
    images = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert model(images).shape == (2, 3, *size)
    outs = model.train()(images)
    assert isinstance(outs, list) and len(outs) == 4
    full = outs[0].shape[-2:]
    assert outs[-1].shape[-2:] == full
    # the pyramid runs on int(s * size) inputs at output stride 8: smaller logits than the full input's
    for out in outs[1:3]:
        assert out.shape[:2] == (2, 3) and out.shape[-1] <= full[-1] and out.shape[-2] <= full[-2]
    assert outs[1].shape[-1] < outs[2].shape[-1] or outs[1].shape[-2] < outs[2].shape[-2]
    fused = tiny_v2(train_output="fused").train()(images)
    assert isinstance(fused, torch.Tensor) and fused.shape == (2, 3, *size)


def test_v2_structure_follows_deeplab():
    model = DeepLabV2R101(21)
    layer3, layer4 = model.backbone.layer3, model.backbone.layer4
    assert len(layer3) == 23 and len(model.backbone.layer2) == 4
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in layer3)
    assert all(b.conv2.dilation == (4, 4) for b in layer4)
    first = model.backbone.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # Caffe: stride in the 1x1
    assert model.backbone.maxpool.ceil_mode
    assert [c.dilation for c in model.aspp.convs] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert model.aspp.convs[0].weight.shape == (21, 2048, 3, 3)
    pytorch = DeepLabV2R101(21, style="pytorch")
    assert pytorch.backbone.layer2[0].conv2.stride == (2, 2) and not pytorch.backbone.maxpool.ceil_mode
    assert pytorch.input_norm == "imagenet" and model.input_norm == "caffe"


def test_v2_gradients_reach_every_trainable_parameter_and_no_frozen_bn():
    model = tiny_v2().train()
    assert all(not bn.training for bn in batchnorm_layers(model))
    images, target = torch.rand(2, 3, 41, 35), torch.randint(0, 3, (2, 41, 35))
    msc_loss(model(images), target).backward()
    for name, p in model.named_parameters():
        is_bn = any(p is q for bn in batchnorm_layers(model) for q in bn.parameters())
        assert p.requires_grad != is_bn, name
        if is_bn:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_v2_param_groups_follow_the_official_multipliers():
    model = tiny_v2()
    opt = build_optimizer(model, TrainConfig(steps=1, lr=2.5e-4, weight_decay=5e-4))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-4, 2.5e-3, 5e-3])
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 5e-4, 0.0]
    assert {id(p) for p in opt.param_groups[2]["params"]} == {id(c.bias) for c in model.aspp.convs}


def test_v2_single_scale_and_determinism():
    images = torch.rand(1, 3, 33, 33)
    a, b = tiny_v2(msc_scales=()).eval(), tiny_v2(msc_scales=()).eval()
    with torch.no_grad():
        assert torch.equal(a(images), b(images))
    assert len(a.train()(images)) == 1


def test_v2_bad_arguments():
    with pytest.raises(ValueError, match="style"):
        tiny_v2(style="mxnet")
    with pytest.raises(ValueError, match="train_output"):
        tiny_v2(train_output="max")
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV2R101(3, backbone_kwargs={**TINY_V2, "output_stride": 16})
    with pytest.raises(ValueError, match="bottleneck ResNet"):
        DeepLabV2R101(3, backbone="resnet18")
    with pytest.raises(TypeError, match="deeplab_msc"):
        wsss_kit.create("losses", "balanced_ce")(tiny_v2().train()(torch.rand(1, 3, 33, 33)),
                                                  torch.zeros(1, 33, 33, dtype=torch.long))
