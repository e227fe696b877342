"""wsss_kit.weights.load_checkpoint: the one path a checkpoint takes into a model."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from wsss_kit.errors import WeightsError
from wsss_kit.weights import load_checkpoint, register_converter, resolve_checkpoint


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_plain_checkpoint_loads_strictly_and_returns_path(tmp_path):
    src, dst = _net(), nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    torch.save({"state_dict": src.state_dict()}, tmp_path / "a.pth")
    path = load_checkpoint(dst, tmp_path / "a.pth", purpose="test net checkpoint")
    assert path == tmp_path / "a.pth"
    assert torch.equal(dst[0].weight, src[0].weight)


def test_converter_with_source_and_options(tmp_path):
    src = _net()
    foreign = {f"old.{k}": v * 1 for k, v in src.state_dict().items()}
    torch.save(foreign, tmp_path / "f.pth")
    seen = {}

    def convert(state, *, prefix, source):
        seen["source"] = source
        return {k[len(prefix):]: v for k, v in state.items()}

    dst = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    load_checkpoint(dst, tmp_path / "f.pth", converter=functools.partial(convert, prefix="old."), purpose="P")
    assert torch.equal(dst[0].bias, src[0].bias)
    assert seen["source"] == f"P {tmp_path / 'f.pth'}"


def test_registered_converter_by_name(tmp_path):
    @register_converter("test_strip_old_prefix")
    def strip(state):
        return {k.removeprefix("old."): v for k, v in state.items()}

    src = _net()
    torch.save({f"old.{k}": v for k, v in src.state_dict().items()}, tmp_path / "f.pth")
    dst = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    load_checkpoint(dst, str(tmp_path / "f.pth"), converter="test_strip_old_prefix")
    assert torch.equal(dst[1].running_var, src[1].running_var)


def test_wrong_layout_names_file_and_keys(tmp_path):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"head checkpoint .*bad\.pth.*missing keys.*unexpected keys: foo\.weight"):
        load_checkpoint(_net(), tmp_path / "bad.pth", purpose="head checkpoint")


def test_converter_failure_names_file(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "c.pth")

    def convert(state):
        return {"x": state["missing"]}

    with pytest.raises(WeightsError, match=r"c\.pth: its layout could not be converted \(KeyError"):
        load_checkpoint(_net(), tmp_path / "c.pth", converter=convert)


@pytest.mark.parametrize("tag", ["timm:resnet50.a1_in1k", "open_clip:ViT-B-16/openai"])
def test_hub_tag_refused_before_resolving(tag):
    with pytest.raises(WeightsError, match=r"--checkpoint: .*hub tag.*a checkpoint is a file.*use weights="):
        resolve_checkpoint(tag, purpose="--checkpoint", hint="use weights=")
    with pytest.raises(WeightsError, match="hub tag"):
        load_checkpoint(_net(), tag)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(WeightsError, match=r"CAM checkpoint: weights file 'nope\.pth' not found"):
        load_checkpoint(_net(), tmp_path / "nope.pth", purpose="CAM checkpoint")


def test_non_strict_returns_after_partial_load(tmp_path):
    src = _net()
    torch.save({k: v for k, v in src.state_dict().items() if k.startswith("0.")}, tmp_path / "p.pth")
    dst = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    load_checkpoint(dst, tmp_path / "p.pth", strict=False)
    assert torch.equal(dst[0].weight, src[0].weight)
