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


def _first_conv_weight(model: CLIMS) -> torch.Tensor:
    return next(m for m in model.cam.modules() if isinstance(m, torch.nn.Conv2d)).weight


@pytest.mark.parametrize("preferred", [True, False])
def test_auto_takes_the_device_preference(monkeypatch: pytest.MonkeyPatch, preferred: bool) -> None:
    import wsss_pole.clims as clims_module

    asked: list[torch.device] = []
    monkeypatch.setattr(clims_module, "prefers_channels_last", lambda d: asked.append(torch.device(d)) or preferred)
    model = make("auto")  # type: ignore[arg-type]
    assert asked and asked[0].type == "cpu"
    assert model.channels_last == "auto" and model.uses_channels_last is preferred
    weight = _first_conv_weight(model)
    assert weight.is_contiguous(memory_format=torch.channels_last) is preferred
    assert weight.is_contiguous() is not preferred


def test_auto_follows_moves_and_keeps_the_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A move re-asks; the layout switch keeps the Parameter objects, so an optimizer built before
    still trains the model, and its step equals the default layout's."""
    import wsss_pole.clims as clims_module

    answer = {"cl": False}
    monkeypatch.setattr(clims_module, "prefers_channels_last", lambda d: answer["cl"])
    model, plain = make("auto"), make(False)  # type: ignore[arg-type]
    assert not model.uses_channels_last
    params = {n: p for n, p in model.named_parameters()}
    opt = torch.optim.SGD([g for g in model.param_groups(0.1) if g["params"]], lr=0.1, momentum=0.9)
    answer["cl"] = True
    model.to("cpu")
    assert model.uses_channels_last and _first_conv_weight(model).is_contiguous(memory_format=torch.channels_last)
    assert all(p is params[n] for n, p in model.named_parameters())
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    plain_opt = torch.optim.SGD([g for g in plain.param_groups(0.1) if g["params"]], lr=0.1, momentum=0.9)
    losses = []
    for m, o in ((model, opt), (plain, plain_opt)):
        out = m(images, labels)
        o.zero_grad()
        out["loss"].backward()
        o.step()
        losses.append(out["loss"].detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    after = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.detach(), after[name].detach(), rtol=1e-4, atol=1e-5, msg=name)
    answer["cl"] = False
    model.to("cpu")
    assert not model.uses_channels_last and _first_conv_weight(model).is_contiguous()


def test_prefers_channels_last_only_on_an_avx512_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsss_pole.clims import prefers_channels_last

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert prefers_channels_last("cpu") is torch.backends.mkldnn.is_available()
    assert prefers_channels_last(torch.device("meta")) is False
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert prefers_channels_last("cpu") is False


def test_auto_reaches_the_factory_and_other_strings_are_refused() -> None:
    model = wsss_kit.create("cams", "clims", num_classes=3, class_names=NAMES, backbone="test_resnet",
                            clip_model=TINY_CLIP, clip_weights=None)
    assert model.channels_last == "auto"
    with pytest.raises(ValueError, match="channels_last must be true or false; got 'Auto' .*\"auto\""):
        CLIMS(3, NAMES, backbone="test_resnet", clip_model=TINY_CLIP, clip_weights=None, channels_last="Auto")
