"""CLIMS ``channels_last``: the same network and training step as the default layout, to float rounding."""

from __future__ import annotations

import pytest
import torch

import wsss_kit
from wsss_kit.clip import TINY_CLIP
from wsss_pole import CLIMS

NAMES = ["cat", "dog", "person"]


def make(channels_last: bool) -> CLIMS:
    torch.manual_seed(0)
    return CLIMS(3, NAMES, backbone="test_resnet", clip_model=TINY_CLIP, clip_weights=None,
                 clip_precision="fp32", channels_last=channels_last).train()


def test_channels_last_weights_and_same_step() -> None:
    plain, cl = make(False), make(True)
    conv = next(m for m in cl.cam.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    steps = {}
    for name, model in (("plain", plain), ("channels_last", cl)):
        opt = torch.optim.SGD([g for g in model.param_groups(0.1) if g["params"]], lr=0.1, momentum=0.9)
        out = model(images, labels)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        steps[name] = (out["loss"].detach(), {n: p.detach().clone() for n, p in model.named_parameters()
                                              if p.requires_grad})
    torch.testing.assert_close(steps["channels_last"][0], steps["plain"][0], rtol=1e-5, atol=1e-5)
    for name, value in steps["plain"][1].items():
        torch.testing.assert_close(steps["channels_last"][1][name], value, rtol=1e-4, atol=1e-5, msg=name)
    plain.eval(), cl.eval()
    with torch.no_grad():
        torch.testing.assert_close(cl.cams(images, labels), plain.cams(images, labels), rtol=1e-4, atol=1e-4)


def test_channels_last_must_be_a_bool_and_reaches_the_factory() -> None:
    with pytest.raises(ValueError, match="channels_last must be true or false; got 'yes'"):
        CLIMS(3, NAMES, backbone="test_resnet", clip_model=TINY_CLIP, clip_weights=None, channels_last="yes")
    model = wsss_kit.create("cams", "clims", num_classes=3, class_names=NAMES, backbone="test_resnet",
                            clip_model=TINY_CLIP, clip_weights=None, channels_last=True)
    assert model.channels_last is True
