"""cams/resnet_cam and cams/mctformer_v1/v2 on the embedded world's backbones (``wsss_world_resnet50``,
``wsss_world_vit``), initialised from their shipped float16 ``released:`` files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import timm
import torch

import wsss_kit
import wsss_kit.weights.released as released_module
from wsss_cams.vit_tokens import resize_pos_embed_to
from wsss_kit.weights import save_packaged_state_dict

LABELS = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Random world backbones saved as packaged files (classifier heads of the pretext's size, 7 and 9
    classes), the packaged folder pointed at them; yields their float16-rounded state dicts."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    nets = {"wsss_world_resnet50": timm.create_model("wsss_world_resnet50", num_classes=7),
            "wsss_world_vit": timm.create_model("wsss_world_vit", num_classes=9)}
    for name, net in nets.items():
        save_packaged_state_dict(net, folder / f"{name}.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(released_module, "PACKAGED_DIR", folder)
        for _name, _entry in list(released_module.RELEASED.items()):  # stand-in files: not the shipped SHA-256
            if _entry.packaged:
                mp.setitem(released_module.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
        yield {name: {k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()}
               for name, net in nets.items()}


@pytest.mark.parametrize("output_stride", [16, 8])
def test_resnet_cam_on_the_world_resnet(shipped, output_stride: int):
    cam = wsss_kit.create("cams", "resnet_cam", num_classes=5, backbone="wsss_world_resnet50",
                          weights="released:wsss_world_resnet50", output_stride=output_stride)
    want = shipped["wsss_world_resnet50"]
    got = cam.backbone.state_dict()
    assert set(got) == {k for k in want if not k.startswith("fc.")}  # the pretext classifier is dropped
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert all(p.dtype == torch.float32 for p in cam.parameters()) and cam.feature_dim == 512
    images = torch.rand(2, 3, 128, 128)
    assert cam.features(images).shape == (2, 512, 128 // output_stride, 128 // output_stride)
    out = cam(images, LABELS)
    out["loss"].backward()
    assert out["logits"].shape == (2, 5) and cam.classifier.weight.grad is not None
    with torch.no_grad():
        cams = cam.eval().cams(images, LABELS, scales=(1.0,), flip=False)
    assert cams.shape == (2, 5, 128, 128) and float(cams[LABELS == 0].abs().max()) == 0.0


@pytest.mark.parametrize(("name", "img_size"), [("mctformer_v1", 128), ("mctformer_v2", 96)])
def test_mctformer_on_the_world_vit(shipped, name: str, img_size: int):
    net = wsss_kit.create("cams", name, num_classes=5, backbone="wsss_world_vit", weights="released:wsss_world_vit",
                          img_size=img_size)
    want = shipped["wsss_world_vit"]
    assert net.patch_size == (8, 8) and net.base_grid == (img_size // 8, img_size // 8)
    assert torch.equal(net.cls_token, want["cls_token"].repeat(1, 5, 1))  # the CLS token, once per class
    assert torch.equal(net.pos_embed[:, :5], want["pos_embed"][:, :1].repeat(1, 5, 1))
    grid = resize_pos_embed_to(want["pos_embed"], 1, net.base_grid)[:, 1:]  # bicubic to img_size, as official
    assert torch.equal(net.pos_embed[:, 5:], grid)
    assert torch.equal(net.blocks[3].attn.qkv.weight, want["blocks.3.attn.qkv.weight"])
    assert net.pos_embed.dtype == torch.float32
    images = torch.rand(2, 3, img_size, img_size)
    out = net(images, LABELS)
    assert out["logits"].shape == (2, 5) and out["loss"].dim() == 0
    with torch.no_grad():
        cams = net.eval().cams(images, LABELS, scales=(1.0,), flip=False)
    assert cams.shape == (2, 5, img_size, img_size)
