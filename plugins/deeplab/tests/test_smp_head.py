"""SMPHead: shapes at any input size, errors that list choices, parameter groups, gradients."""

from __future__ import annotations

import pytest
import torch

import wsss_kit
from wsss_deeplab import SMPHead, balanced_ce_loss

ENCODER = "tu-test_resnet"  # timm's tiny ResNet through smp's timm bridge


def make(num_classes: int = 3, seed: int = 0, **kwargs) -> SMPHead:
    torch.manual_seed(seed)
    kwargs.setdefault("encoder_name", ENCODER)
    return SMPHead(num_classes, **kwargs)


@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_logits_at_the_input_size(size):
    head = make().eval()
    with torch.no_grad():
        logits = head(torch.rand(2, 3, *size))
    assert logits.shape == (2, 3, *size) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_default_resnet18_deeplabv3plus():
    head = make(num_classes=21, encoder_name="resnet18").eval()
    assert head.arch == "DeepLabV3Plus" and head.size_multiple == 16
    with torch.no_grad():
        assert head(torch.rand(1, 3, 50, 70)).shape == (1, 21, 50, 70)


@pytest.mark.parametrize("arch,kwargs", [("Unet", {}), ("fpn", {"encoder_depth": 4}), ("PSPNet", {})])
def test_other_architectures_pad_and_crop(arch, kwargs):
    head = make(arch=arch, **kwargs).eval()
    with torch.no_grad():
        assert head(torch.rand(2, 3, 45, 33)).shape == (2, 3, 45, 33)


def test_normalisation_padding_and_crop():
    head = make().eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        # aligned input: no padding, the raw smp model on ImageNet-normalised images
        assert torch.allclose(head(images), head.model((images - head.mean) / head.std))
        # unaligned input: zero-padded bottom/right after normalisation, cropped back
        small = images[..., :50, :61]
        padded = torch.zeros(2, 3, 64, 64)
        padded[..., :50, :61] = (small - head.mean) / head.std
        assert torch.allclose(head(small), head.model(padded)[..., :50, :61], atol=1e-6)


def test_gradients_reach_every_trainable_parameter():
    head = make().train()
    with torch.no_grad():
        # timm zero-initialises each residual block's last BN scale; make every branch live
        for m in head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    target = torch.randint(0, 3, (2, 40, 40))
    balanced_ce_loss(head(torch.rand(2, 3, 40, 40)), target).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_param_groups():
    head = make(decoder_lr_mult=5.0)
    groups = head.param_groups(0.1)
    assert [g["lr_mult"] for g in groups] == [1.0, 5.0]
    assert groups[0]["lr"] == pytest.approx(0.1) and groups[1]["lr"] == pytest.approx(0.5)
    encoder = {id(p) for p in head.model.encoder.parameters()}
    assert {id(p) for p in groups[0]["params"]} == encoder
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in head.parameters()} - encoder
    assert any(p is head.model.segmentation_head[0].weight for p in groups[1]["params"])
    torch.optim.SGD(groups, lr=0.1)


def test_determinism_under_a_seed():
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = make(seed=1).eval()(images)
        b = make(seed=1).eval()(images)
        c = make(seed=2).eval()(images)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_local_encoder_weights_are_loaded(tmp_path):
    source = make(seed=4)
    path = tmp_path / "encoder.pth"
    torch.save(source.model.encoder.state_dict(), path)
    loaded = make(seed=5, encoder_weights=str(path))
    for key, value in source.model.encoder.state_dict().items():
        assert torch.equal(loaded.model.encoder.state_dict()[key], value), key
    with pytest.raises(wsss_kit.WeightsError, match="not found"):
        make(encoder_weights=str(tmp_path / "missing.pth"))


def test_errors_list_valid_choices():
    with pytest.raises(ValueError,
                       match=r"unknown smp arch 'DeepLabV3Pls'; available: .*Unet.*did you mean 'DeepLabV3Plus'"):
        make(arch="DeepLabV3Pls")
    with pytest.raises(ValueError, match=r"unknown smp encoder_name 'resnet17'; available: .*resnet18.*tu-"):
        make(encoder_name="resnet17")
    with pytest.raises(ValueError, match=r"unknown smp encoder_name 'tu-not_a_model'"):
        make(encoder_name="tu-not_a_model")
    with pytest.raises(TypeError, match=r"unexpected keyword 'decoder_chanels'.*did you mean 'decoder_channels'"):
        make(decoder_chanels=128)
    with pytest.raises(TypeError, match="activation"):
        make(activation="softmax")
    with pytest.raises(ValueError, match="num_classes"):
        SMPHead(1, encoder_name=ENCODER)
    with pytest.raises(ValueError, match="smp could not build Unet with encoder 'tu-test_resnet', encoder_depth=3"):
        make(arch="Unet", encoder_depth=3)
    head = make()
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        head(torch.rand(2, 4, 32, 32))


def test_smp_kwargs_reach_the_model():
    head = make(decoder_channels=64, encoder_output_stride=8)
    assert head.size_multiple == 8
    assert head.model.segmentation_head[0].in_channels == 64
