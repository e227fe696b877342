"""heads/deeplab_v2_r101, heads/smp (``tu-wsss_world_resnet50``) and refiners/irn_rw on the embedded
world's ResNet (``wsss_world_resnet50``), initialised from its shipped float16 ``released:`` file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import timm
import torch

import wsss_kit
import wsss_kit.weights.released as released_module
from wsss_kit.weights import save_packaged_state_dict

SPEC = "released:wsss_world_resnet50"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, torch.Tensor]]:
    """A random world ResNet with a 7-class pretext classifier saved as the packaged file; yields its
    float16-rounded state dict while the packaged folder points at it."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    net = timm.create_model("wsss_world_resnet50", num_classes=7)
    save_packaged_state_dict(net, folder / "wsss_world_resnet50.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(released_module, "PACKAGED_DIR", folder)
        for _name, _entry in list(released_module.RELEASED.items()):  # stand-in files: not the shipped SHA-256
            if _entry.packaged:
                mp.setitem(released_module.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
        yield {k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()}


def _assert_backbone(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], prefix: str = "") -> None:
    keys = {k[len(prefix):] for k in got if k.startswith(prefix)}
    assert keys and keys <= set(want) and "layer4.2.conv3.weight" in keys
    assert all(torch.equal(got[prefix + k], want[k]) for k in keys)
    assert all(v.dtype == want[k[len(prefix):]].dtype for k, v in got.items() if k.startswith(prefix))


def test_deeplab_v2_on_the_world_resnet(world):
    head = wsss_kit.create("heads", "deeplab_v2_r101", num_classes=6, backbone="wsss_world_resnet50",
                           weights=SPEC, style="pytorch")
    _assert_backbone(head.backbone.state_dict(), world)
    assert head.backbone.layer3[0].conv2.dilation == (2, 2) and head.backbone.layer4[2].conv2.dilation == (4, 4)
    assert head.aspp.convs[0].in_channels == 512
    logits = head.eval()(torch.rand(1, 3, 128, 128))
    assert logits.shape == (1, 6, 128, 128) and logits.dtype == torch.float32


def test_smp_head_with_the_world_resnet_encoder(world):
    head = wsss_kit.create("heads", "smp", num_classes=6, encoder_name="tu-wsss_world_resnet50",
                           encoder_weights=SPEC)
    _assert_backbone(head.model.encoder.state_dict(), world, prefix="model.")
    assert head.eval()(torch.rand(1, 3, 96, 96)).shape == (1, 6, 96, 96)


def test_irn_on_the_world_resnet(world):
    irn = wsss_kit.create("refiners", "irn_rw", backbone="wsss_world_resnet50", weights=SPEC, width=8)
    _assert_backbone(irn.backbone.body.state_dict(), world)
    images = torch.rand(2, 3, 64, 64)
    feats = irn.features(images)
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 16), (64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                   (512, 4, 4)]  # strides 4, 4, 8, 16, 16 as IRN's
    assert irn.boundary_logits(images).shape == (2, 1, 16, 16)
