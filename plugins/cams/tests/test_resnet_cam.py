"""ResNetCAM: shapes, CAM properties, frozen stem, parameter groups, determinism, a toy fit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_cams import ResNetCAM

BACKBONE = "test_resnet"  # timm's tiny ResNet (~0.4M parameters), random init


def make(num_classes: int = 3, seed: int = 0, **kwargs) -> ResNetCAM:
    torch.manual_seed(seed)
    kwargs.setdefault("backbone", BACKBONE)
    return ResNetCAM(num_classes, **kwargs)


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_shapes_at_two_input_sizes(size):
    model = make().eval()
    images = torch.rand(2, 3, *size)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(images, labels)
    assert out["logits"].shape == (2, 3) and out["logits"].dtype == torch.float32
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert "loss" not in model(images)
    raw = model.raw_cams(images)
    assert raw.shape == (2, 3, size[0] // 16, size[1] // 16)  # output stride 16
    with torch.no_grad():
        cams = model.cams(images, labels, scales=(1.0, 0.5), flip=True)
    assert cams.shape == (2, 3, *size) and cams.dtype == torch.float32


def test_logits_are_the_pooled_raw_cams():
    # a bias-free 1x1 classifier commutes with global average pooling
    model = make().eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(images)["logits"], model.raw_cams(images).mean(dim=(2, 3)), atol=1e-5)
    assert model.classifier.bias is None


def test_cams_range_zero_for_absent_classes_and_flip_aggregation():
    model = make().eval()
    images = torch.rand(2, 3, 64, 48)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    with torch.no_grad():
        cams = model.cams(images, labels)  # constructor defaults: 4 scales + flip
        assert cams.min() >= 0 and cams.max() <= 1
        assert torch.count_nonzero(cams[labels == 0]) == 0
        peaks = cams[labels == 1].flatten(1).amax(1)
        # a present class peaks at 1, unless the rectified map is empty (possible at random init)
        assert torch.all((peaks > 0.99) | (peaks == 0)) and torch.any(peaks > 0.99)

        flipped = model.cams(images, labels, scales=(1.0,), flip=True)
        size = images.shape[-2:]

        def up(x):
            return F.interpolate(F.relu(model.raw_cams(x)), size=size, mode="bilinear", align_corners=False)

        total = (up(images) + up(images.flip(-1)).flip(-1)) * labels[:, :, None, None]
        expected = total / (total.flatten(2).amax(2)[..., None, None] + 1e-5)
        assert torch.allclose(flipped, expected, atol=1e-5)
        assert not torch.allclose(flipped, model.cams(images, labels, scales=(1.0,), flip=False), atol=1e-3)


def test_seeds_use_the_background_threshold_and_never_pick_absent_classes():
    model = make().eval()
    images = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    with torch.no_grad():
        cams = model.cams(images, labels, scales=(1.0,), flip=False)
    seeds = model.seeds(cams, bg_threshold=0.3)
    assert seeds.shape == (2, 64, 64) and seeds.dtype == torch.int64
    assert set(seeds[0].unique().tolist()) <= {0, 2}
    assert set(seeds[1].unique().tolist()) <= {0, 1, 3}
    assert torch.equal(seeds == 0, cams.amax(1) <= 0.3)
    assert torch.all(model.seeds(cams, bg_threshold=1.0) == 0)


@pytest.mark.parametrize("frozen_stages", [2, 0])
def test_gradients_reach_trainable_parameters_and_not_the_frozen_parts(frozen_stages):
    model = make(frozen_stages=frozen_stages).train()
    with torch.no_grad():
        # timm zero-initialises each block's last BN scale, which would zero the gradient of the
        # convolutions before it; give every BN a non-zero scale so the check sees every weight
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    out = model(torch.rand(2, 3, 64, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    out["loss"].backward()
    frozen = ("conv1", "bn1") + tuple(f"layer{i + 1}" for i in range(frozen_stages))
    frozen_ids = {id(p) for name in frozen for p in getattr(model.backbone, name).parameters()}
    assert frozen_ids
    for name, p in model.named_parameters():
        if id(p) in frozen_ids:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_stem_batchnorm_stays_in_eval_mode():
    # ordinary BatchNorm elsewhere (fixed_bn=False) and no frozen residual stage
    model = make(fixed_bn=False, frozen_stages=0).train()
    assert not model.backbone.bn1.training and model.backbone.layer1.training
    before = model.backbone.bn1.running_mean.clone()
    inner = next(m for m in model.backbone.layer1.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inner_before = inner.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert torch.equal(model.backbone.bn1.running_mean, before)
    assert not torch.equal(inner.running_mean, inner_before)
    model.eval().train()
    assert not model.backbone.bn1.training

    unfrozen = make(freeze_stem=False, fixed_bn=False).train()
    assert unfrozen.backbone.bn1.training
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_param_groups():
    model = make(classifier_lr_mult=7.0)
    groups = model.param_groups(0.01)
    assert [g["lr_mult"] for g in groups] == [1.0, 7.0]
    assert groups[0]["lr"] == pytest.approx(0.01) and groups[1]["lr"] == pytest.approx(0.07)
    assert groups[1]["params"] == [model.classifier.weight]
    grouped = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable
    assert not any(id(p) in grouped for p in model.backbone.conv1.parameters())
    torch.optim.SGD(groups, lr=0.01, momentum=0.9)  # accepted as is


def test_determinism_under_a_seed():
    a, b = make(seed=3).eval(), make(seed=3).eval()
    images = torch.rand(2, 3, 48, 48)
    labels = torch.ones(2, 3)
    with torch.no_grad():
        assert torch.equal(a(images)["logits"], b(images)["logits"])
        assert torch.equal(a.cams(images, labels), b.cams(images, labels))
    c = make(seed=4).eval()
    with torch.no_grad():
        assert not torch.equal(a(images)["logits"], c(images)["logits"])


def test_other_backbones_and_output_strides():
    model = make(backbone="resnet18", output_stride=8, num_classes=2).eval()
    with torch.no_grad():
        assert model.raw_cams(torch.rand(1, 3, 64, 64)).shape == (1, 2, 8, 8)
    assert model.feature_dim == 512
    # stems under other names are found and frozen too
    effnet = make(backbone="test_efficientnet", dilate_last_stage=True, frozen_stages=0)
    assert not any(p.requires_grad for p in effnet.backbone.conv_stem.parameters())
    assert all(p.requires_grad for p in effnet.backbone.blocks.parameters())


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_classes"):
        ResNetCAM(0, backbone=BACKBONE)
    with pytest.raises(ValueError, match="output_stride"):
        ResNetCAM(2, backbone=BACKBONE, output_stride=12)
    with pytest.raises(ValueError, match=r"backbone 'resnet5O' is not a timm model.*resnet50"):
        ResNetCAM(2, backbone="resnet5O")
    with pytest.raises(ValueError, match="scales"):
        ResNetCAM(2, backbone=BACKBONE, scales=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"backbone 'test_vit' cannot be built .*output_stride"):
        ResNetCAM(2, backbone="test_vit")
    model = make()
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\).*\(2, 1, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="labels must have the logits' shape"):
        model(torch.rand(2, 3, 32, 32), torch.ones(2, 4))


def test_missing_weights_file_is_a_weights_error(tmp_path):
    with pytest.raises(wsss_kit.WeightsError, match="not found"):
        ResNetCAM(2, backbone=BACKBONE, weights=tmp_path / "res50_cam.pth")


def test_weights_file_round_trip(tmp_path):
    source = make(seed=5)
    path = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), path)
    loaded = ResNetCAM(3, backbone=BACKBONE, weights=str(path))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


def toy_batch(n: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Gray images with a red square (class 0), a blue square (class 1), or both."""
    g = torch.Generator().manual_seed(0)
    images = torch.full((n, 3, size, size), 0.5)
    labels = torch.zeros(n, 2)
    for i in range(n):
        for c, channel in ((0, 0), (1, 2)):
            if (i >> c) & 1 or i % 4 == 3:
                y, x = torch.randint(0, size - 10, (2,), generator=g).tolist()
                images[i, :, y:y + 10, x:x + 10] = 0.0
                images[i, channel, y:y + 10, x:x + 10] = 1.0
                labels[i, c] = 1.0
    return images, labels


def test_training_on_a_toy_problem_reduces_the_loss():
    model = make(num_classes=2, seed=0).train()
    images, labels = toy_batch()
    optimizer = torch.optim.Adam(model.param_groups(1e-3), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(images, labels)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    with torch.no_grad():
        predicted = model(images)["logits"] > 0
    assert (predicted == labels.bool()).float().mean() >= 0.75
