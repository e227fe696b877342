"""ResNetCAM against the official IRN/CLIMS CAM network, rebuilt here at tiny width.

``ReferenceCAMNet`` follows the structure of IRN's ``net/resnet50.py`` + ``net/resnet50_cam.py``
(torchvision-style Bottleneck ResNet with configurable strides and dilation 1, the modules
registered again as ``stage*``, ``backbone`` and ``newly_added``, so its ``state_dict()`` has the
official alias keys), and ``reference_highres_cams`` follows ``step/make_cam.py``. Both use
narrow Bottleneck stages (timm's ``resnet50`` with ``layers``/``channels`` overridden shares the
structure) so every test runs in about a second on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_cams import ResNetCAM
from wsss_cams.convert_resnet_cam import convert_irn_resnet50_cam, is_irn_layout
from wsss_kit.weights import CONVERTERS

LAYERS = (1, 1, 1, 2)  # two blocks in layer4, so a dilated layer4 differs from the official one
CHANNELS = (8, 16, 32, 64)
TINY = {"layers": LAYERS, "channels": CHANNELS}
NUM_CLASSES = 3
SCALES = (1.0, 0.5, 1.5, 2.0)
MEAN = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)


# ---------------------------------------------------------------- the official network, tiny
class ReferenceBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ReferenceResNet(nn.Module):
    """Bottleneck ResNet; ``strides`` = (conv1, layer2, layer3, layer4), dilation 1 everywhere."""

    def __init__(self, layers=LAYERS, channels=CHANNELS, strides=(2, 2, 2, 1)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=strides[0], padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(channels[0], layers[0], 1)
        self.layer2 = self._stage(channels[1], layers[1], strides[1])
        self.layer3 = self._stage(channels[2], layers[2], strides[2])
        self.layer4 = self._stage(channels[3], layers[3], strides[3])

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [ReferenceBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [ReferenceBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class ReferenceCAMNet(nn.Module):
    """IRN's CAM ``Net``: one ResNet, its modules registered under every official alias."""

    def __init__(self, num_classes=NUM_CLASSES, layers=LAYERS, channels=CHANNELS, strides=(2, 2, 2, 1)):
        super().__init__()
        r = self.resnet50 = ReferenceResNet(layers, channels, strides)
        self.stage1 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.stage2 = nn.Sequential(r.layer2)
        self.stage3 = nn.Sequential(r.layer3)
        self.stage4 = nn.Sequential(r.layer4)
        self.classifier = nn.Conv2d(channels[3] * 4, num_classes, 1, bias=False)
        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.newly_added = nn.ModuleList([self.classifier])

    def features(self, normalised: torch.Tensor) -> torch.Tensor:
        return self.stage4(self.stage3(self.stage2(self.stage1(normalised))))

    def logits(self, normalised: torch.Tensor) -> torch.Tensor:
        pooled = self.features(normalised).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def cam_pair(self, pair: torch.Tensor) -> torch.Tensor:
        """IRN's ``CAM.forward``: (2, 3, h, w) = [image, flipped image] → (C, h', w')."""
        x = F.relu(F.conv2d(self.features(pair), self.classifier.weight))
        return x[0] + x[1].flip(-1)


def reference_net(seed: int = 0, **kwargs) -> ReferenceCAMNet:
    """A reference network with random weights and non-trivial BatchNorm statistics, in eval mode
    (FixedBatchNorm: running statistics always)."""
    torch.manual_seed(seed)
    net = ReferenceCAMNet(**kwargs)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def reference_highres_cams(net: ReferenceCAMNet, image: torch.Tensor, label: torch.Tensor,
                           scales=SCALES) -> tuple[torch.Tensor, torch.Tensor]:
    """IRN's ``make_cam`` high-res CAM of one image (3, H, W) in [0, 1]: (valid classes, maps).

    The official data loader resizes with PIL bicubic on uint8; this uses the same float
    bilinear resize as the plugin (see docs/paper_vs_code.md)."""
    height, width = image.shape[-2:]
    up = (math.ceil(height / 16) * 16, math.ceil(width / 16) * 16)
    outputs = []
    for s in scales:
        scaled = image if s == 1 else F.interpolate(
            image[None], size=(round(height * s), round(width * s)), mode="bilinear", align_corners=False)[0]
        normalised = (scaled - MEAN) / STD
        outputs.append(net.cam_pair(torch.stack([normalised, normalised.flip(-1)])))
    highres = [F.interpolate(o[:, None], up, mode="bilinear", align_corners=False) for o in outputs]
    highres = torch.sum(torch.stack(highres, 0), 0)[:, 0, :height, :width]
    valid = torch.nonzero(label)[:, 0]
    cams = highres[valid]
    cams = cams / (F.adaptive_max_pool2d(cams, (1, 1)) + 1e-5)
    return valid, cams


def plugin(checkpoint=None, seed: int = 1, **kwargs) -> ResNetCAM:
    torch.manual_seed(seed)
    kwargs.setdefault("backbone", "resnet50")
    kwargs.setdefault("backbone_kwargs", TINY)
    return ResNetCAM(kwargs.pop("num_classes", NUM_CLASSES), checkpoint=checkpoint, **kwargs)


def save_official(tmp_path, net: ReferenceCAMNet, name: str = "res50_cam.pth", wrap=None):
    path = tmp_path / name
    state = net.state_dict()
    torch.save(state if wrap is None else wrap(state), path)
    return path


def images_70x83() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.rand(2, 3, 70, 83, generator=g), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


# ---------------------------------------------------------------- conversion
def test_the_reference_has_every_official_alias():
    keys = set(reference_net().state_dict())
    for key in ("resnet50.conv1.weight", "resnet50.bn1.num_batches_tracked", "resnet50.layer4.1.bn3.running_var",
                "resnet50.layer2.0.downsample.0.weight", "stage1.0.weight", "stage1.1.bias",
                "stage1.4.0.conv1.weight", "stage4.0.0.downsample.1.weight", "backbone.0.0.weight",
                "backbone.3.0.1.conv2.weight", "classifier.weight", "newly_added.0.weight"):
        assert key in keys, key


def test_converted_weights_load_strictly_from_every_alias_family(tmp_path):
    net = reference_net()
    state = net.state_dict()
    model = plugin()
    expected = set(model.state_dict())
    stage_only = {k: v for k, v in state.items() if k.startswith(("stage", "classifier."))}
    list_only = {k: v for k, v in state.items() if k.startswith(("backbone.", "newly_added."))}
    assert is_irn_layout(state) and is_irn_layout(stage_only) and is_irn_layout(list_only)
    assert not is_irn_layout(model.state_dict())
    ddp = {f"module.{k}": v for k, v in state.items()}
    for variant in (state, stage_only, list_only, ddp):
        converted = convert_irn_resnet50_cam(variant, num_classes=NUM_CLASSES)
        assert set(converted) == expected
        assert torch.equal(converted["backbone.layer4.1.conv2.weight"], net.resnet50.layer4[1].conv2.weight)
        assert torch.equal(converted["backbone.bn1.running_mean"], net.resnet50.bn1.running_mean)
        assert torch.equal(converted["classifier.weight"], net.classifier.weight)
    # our own layout passes through; the converter is registered by name
    own = model.state_dict()
    assert convert_irn_resnet50_cam(own).keys() == own.keys()
    assert CONVERTERS["irn_resnet_cam"] is convert_irn_resnet50_cam

    # a DDP 'module.' prefix inside a {"state_dict": ...} wrapper, and the released: name
    wrapped = save_official(tmp_path, net, "ddp.pth", wrap=lambda s: {"state_dict": {f"module.{k}": v
                                                                                     for k, v in s.items()}})
    loaded = plugin(checkpoint=wrapped)
    for key, value in convert_irn_resnet50_cam(state).items():
        assert torch.equal(loaded.state_dict()[key], value), key
    save_official(tmp_path, net)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WSSS_WEIGHTS_DIR", str(tmp_path))
        released = plugin(checkpoint="released:irn_res50_cam")
    assert torch.equal(released.classifier.weight, net.classifier.weight)


def test_the_converter_is_generic_over_depth_width_and_block_type():
    # timm's deep-stem, avg-down, BasicBlock test_resnet written in IRN's alias layout converts back
    own = ResNetCAM(2, backbone="test_resnet", frozen_stages=0).state_dict()
    aliases = {"conv1.": ["stage1.0.", "backbone.0.0."], "bn1.": ["stage1.1.", "backbone.0.1."],
               "layer1.": ["stage1.4.", "backbone.0.4."], "layer2.": ["stage2.0.", "backbone.1.0."],
               "layer3.": ["stage3.0.", "backbone.2.0."], "layer4.": ["stage4.0.", "backbone.3.0."]}
    official = {"classifier.weight": own["classifier.weight"], "newly_added.0.weight": own["classifier.weight"]}
    for key, value in own.items():
        if key.startswith("backbone."):
            name = key[len("backbone."):]
            official[f"resnet50.{name}"] = value
            prefix = next(p for p in aliases if name.startswith(p))
            for alias in aliases[prefix]:
                official[alias + name[len(prefix):]] = value
    converted = convert_irn_resnet50_cam(official, num_classes=2)
    assert converted.keys() == own.keys()
    assert all(torch.equal(converted[k], own[k]) for k in own)


# ---------------------------------------------------------------- numerics
@pytest.mark.parametrize(("output_stride", "strides"), [(16, (2, 2, 2, 1)), (8, (2, 2, 1, 1)), (32, (2, 2, 2, 2))])
def test_features_and_logits_equal_the_official_network(tmp_path, output_stride, strides):
    net = reference_net(strides=strides)
    model = plugin(save_official(tmp_path, net), output_stride=output_stride).eval()
    images, _ = images_70x83()
    with torch.no_grad():
        expected = net.features((images - MEAN) / STD)
        feats = model.features(images)
        assert feats.shape == expected.shape == (2, 256, math.ceil(70 / output_stride), math.ceil(83 / output_stride))
        assert torch.allclose(feats, expected, atol=1e-5)
        assert torch.allclose(model(images)["logits"], net.logits((images - MEAN) / STD), atol=1e-5)


def test_cams_equal_the_official_high_res_cams_at_a_size_not_a_multiple_of_16(tmp_path):
    net = reference_net()
    model = plugin(save_official(tmp_path, net)).eval()
    assert model.upsample == "strided" and model.scales == SCALES and model.flip
    images, labels = images_70x83()
    with torch.no_grad():
        cams = model.cams(images, labels, scales=SCALES, flip=True)
        assert torch.equal(cams, model.cams(images, labels))  # the defaults are the official ones
        assert cams.shape == (2, NUM_CLASSES, 70, 83)
        for b in range(2):
            valid, expected = reference_highres_cams(net, images[b], labels[b])
            assert torch.allclose(cams[b, valid], expected, atol=1e-5), (cams[b, valid] - expected).abs().max()
            absent = labels[b] == 0
            assert torch.count_nonzero(cams[b, absent]) == 0
        # resizing straight to 70×83 is a different (non-official) aggregation
        direct = plugin(save_official(tmp_path, net), upsample="image").eval().cams(images, labels)
        assert not torch.allclose(direct, cams, atol=1e-3)


def test_fixed_bn_uses_running_statistics_in_train_mode(tmp_path):
    net = reference_net()
    path = save_official(tmp_path, net)
    model = plugin(path).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and model.training and model.classifier.training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    images, labels = images_70x83()
    out = model(images, labels)
    with torch.no_grad():
        assert torch.allclose(out["logits"], net.logits((images - MEAN) / STD), atol=1e-5)
    out["loss"].backward()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    # affine parameters of the non-frozen stages still learn
    assert model.backbone.layer3[0].bn1.weight.grad is not None and model.backbone.layer4[1].bn3.bias.grad is not None
    model.eval().train()
    assert not any(m.training for m in bns)

    ordinary = plugin(path, fixed_bn=False, frozen_stages=0).train()
    ordinary(images)
    assert not torch.equal(ordinary.backbone.layer1[0].bn1.running_mean, net.resnet50.layer1[0].bn1.running_mean)
    assert not torch.equal(ordinary.backbone.layer4[0].bn1.running_mean, net.resnet50.layer4[0].bn1.running_mean)
    assert torch.equal(ordinary.backbone.bn1.running_mean, net.resnet50.bn1.running_mean)  # frozen stem


def _input_support_width(model: ResNetCAM, size: int = 192) -> int:
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    feats = model.features(image)
    centre = feats.shape[-1] // 2
    feats[0, :, centre, centre].sum().backward()
    cols = torch.nonzero(image.grad.abs().sum(dim=(0, 1, 2)))[:, 0]
    return int(cols.max() - cols.min() + 1)


def test_dilating_the_last_stage_keeps_the_size_but_widens_the_receptive_field(tmp_path):
    path = save_official(tmp_path, reference_net())
    official = plugin(path, frozen_stages=0).eval()
    dilated = plugin(path, frozen_stages=0, dilate_last_stage=True).eval()
    images, _ = images_70x83()
    with torch.no_grad():
        a, b = official.features(images), dilated.features(images)
    assert a.shape == b.shape == (2, 256, 5, 6)
    assert not torch.allclose(a, b, atol=1e-3)
    assert official.backbone.layer4[1].conv2.dilation == (1, 1)
    assert dilated.backbone.layer4[1].conv2.dilation == (2, 2)
    narrow, wide = _input_support_width(official), _input_support_width(dilated)
    # theoretical receptive fields 107 and 139: layer4's second 3×3 conv adds 2·16 input pixels at
    # dilation 1 and 2·2·16 at dilation 2
    assert narrow <= 107 < wide <= 139


# ---------------------------------------------------------------- training behaviour
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(tmp_path):
    model = plugin(save_official(tmp_path, reference_net())).train()
    images, labels = images_70x83()
    model(images, labels)["loss"].backward()
    frozen = {id(p) for name in ("conv1", "bn1", "layer1", "layer2")
              for p in getattr(model.backbone, name).parameters()}
    trainable = [n for n, p in model.named_parameters() if id(p) not in frozen]
    assert trainable and any(n.startswith("backbone.layer3") for n in trainable)
    for name, p in model.named_parameters():
        if id(p) in frozen:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    groups = model.param_groups(0.1)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters() if p.requires_grad}
    assert groups[1]["lr"] == pytest.approx(1.0)


def test_determinism(tmp_path):
    path = save_official(tmp_path, reference_net())
    images, labels = images_70x83()
    a, b = plugin(path, seed=1).eval(), plugin(path, seed=2).eval()  # the checkpoint overrides the init
    with torch.no_grad():
        first = a.cams(images, labels)
        assert torch.equal(first, a.cams(images, labels))
        assert torch.equal(first, b.cams(images, labels))


# ---------------------------------------------------------------- errors
def test_class_count_mismatch_names_both_counts(tmp_path):
    path = save_official(tmp_path, reference_net(num_classes=20))
    with pytest.raises(wsss_kit.WeightsError, match=r"20-class classifier.*num_classes=3"):
        plugin(path)
    with pytest.raises(wsss_kit.WeightsError, match=r"20-class classifier.*num_classes=5"):
        convert_irn_resnet50_cam(reference_net(num_classes=20).state_dict(), num_classes=5)


def test_other_architectures_say_what_they_look_like(tmp_path):
    mctformer = {"cls_token": torch.zeros(1, 20, 8), "pos_embed": torch.zeros(1, 24, 8),
                 "blocks.0.attn.qkv.weight": torch.zeros(24, 8)}
    with pytest.raises(wsss_kit.WeightsError, match=r"not a ResNet CAM checkpoint.*Vision Transformer.*mctformer"):
        convert_irn_resnet50_cam(mctformer)
    imagenet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(8, 64, 1, 1),
                "fc.weight": torch.zeros(1000, 2048)}
    torch.save(imagenet, tmp_path / "resnet50-imagenet.pth")
    with pytest.raises(wsss_kit.WeightsError, match=r"ImageNet ResNet backbone.*pass it as weights="):
        plugin(tmp_path / "resnet50-imagenet.pth")
    relation = dict(reference_net().state_dict(), **{"edge1.0.weight": torch.zeros(1)})
    with pytest.raises(wsss_kit.WeightsError, match=r"keys its ResNet CAM network does not: edge1.0.weight"):
        convert_irn_resnet50_cam(relation)
    no_classifier = {k: v for k, v in reference_net().state_dict().items() if k.startswith("resnet50.")}
    with pytest.raises(wsss_kit.WeightsError, match="no classifier"):
        convert_irn_resnet50_cam(no_classifier)
    edited = reference_net().state_dict()
    edited["stage4.0.0.conv1.weight"] = edited["stage4.0.0.conv1.weight"] + 1
    with pytest.raises(wsss_kit.WeightsError, match="different values"):
        convert_irn_resnet50_cam(edited)


def test_depth_mismatch_names_the_blocks(tmp_path):
    path = save_official(tmp_path, reference_net(layers=(1, 1, 3, 2)))
    with pytest.raises(wsss_kit.WeightsError, match=r"blocks \(1, 1, 3, 2\).*backbone 'resnet50' has .*\(1, 1, 1, 2\)"):
        plugin(path)
    deeper = plugin(path, backbone_kwargs={"layers": (1, 1, 3, 2), "channels": CHANNELS})  # the matching depth
    assert len(deeper.backbone.layer3) == 3


def test_a_cam_checkpoint_given_as_backbone_weights_is_pointed_to_checkpoint(tmp_path):
    path = save_official(tmp_path, reference_net())
    with pytest.raises(wsss_kit.WeightsError, match="pass it as checkpoint="):
        plugin(weights=str(path))


def test_unsupported_option_combinations_raise_clear_errors():
    with pytest.raises(ValueError, match="dilate_last_stage=True needs output_stride 16 or 8"):
        plugin(output_stride=32, dilate_last_stage=True)
    with pytest.raises(ValueError, match="upsample must be one of 'strided', 'image'"):
        plugin(upsample="bilinear")
    with pytest.raises(ValueError, match="freeze_stem=False contradicts frozen_stages=2"):
        plugin(freeze_stem=False, frozen_stages=2)
    trains_everything = plugin(freeze_stem=False)  # frozen_stages follows freeze_stem by default
    assert trains_everything.frozen_stages == 0 and all(p.requires_grad for p in trains_everything.parameters())
    assert plugin().frozen_stages == 2
    with pytest.raises(ValueError, match=r"frozen_stages must be an int >= 0"):
        plugin(frozen_stages=-1)
    with pytest.raises(ValueError, match=r"frozen_stages=5 but backbone 'resnet50' has 4"):
        plugin(frozen_stages=5)
    with pytest.raises(ValueError, match=r"'test_efficientnet' has 0 such stages; pass dilate_last_stage=True"):
        ResNetCAM(2, backbone="test_efficientnet", frozen_stages=0)
    with pytest.raises(ValueError, match="backbone_kwargs must not set output_stride"):
        plugin(backbone_kwargs={"output_stride": 8})
