"""The cams distribution's entry points are discovered and built through the wsss_kit registry."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

import wsss_kit
from wsss_cams import MultiLabelSoftMarginLoss, ResNetCAM
from wsss_kit.testing import check_plugin

DIST = "wsss-kit-cams"


def test_registry_lists_the_plugins_with_distribution_and_version():
    version = importlib.metadata.version(DIST)
    found = {(i.kind, i.name): i for i in wsss_kit.list_plugins(load=True) if i.dist == DIST}
    assert set(found) == {("cams", "resnet_cam"), ("cams", "mctformer_v1"), ("cams", "mctformer_v2"),
                          ("losses", "multilabel_soft_margin")}
    for info in found.values():
        assert info.version == version
        assert info.status == "ok", info.error
    assert found[("cams", "resnet_cam")].target == "wsss_cams.resnet_cam:ResNetCAM"


def test_create_builds_them():
    torch.manual_seed(0)
    cam = wsss_kit.create("cams", "resnet_cam", num_classes=4, backbone="test_resnet")
    assert isinstance(cam, ResNetCAM) and isinstance(cam, wsss_kit.CAMGenerator)
    assert cam.num_classes == 4
    cam = wsss_kit.create("cams", f"{DIST}:resnet_cam", num_classes=2, backbone="test_resnet")
    assert cam(torch.rand(1, 3, 32, 32))["logits"].shape == (1, 2)
    loss = wsss_kit.create("losses", "multilabel_soft_margin")
    assert isinstance(loss, MultiLabelSoftMarginLoss) and isinstance(loss, wsss_kit.Loss)
    assert ResNetCAM.wsss_api_version == MultiLabelSoftMarginLoss.wsss_api_version == "1.0"


def test_create_rejects_unknown_keywords():
    try:
        wsss_kit.create("cams", "resnet_cam", num_classes=2, backbon="test_resnet")
    except TypeError as exc:
        assert "backbon" in str(exc) and "backbone" in str(exc)
    else:
        raise AssertionError("an unknown keyword was accepted")


@pytest.mark.parametrize("name, kwargs", [
    ("resnet_cam", {"backbone": "test_resnet"}),
    ("mctformer_v1", {"backbone": "test_vit", "img_size": 64}),
    ("mctformer_v2", {"backbone": "test_vit", "img_size": 64}),
])
def test_cam_generators_pass_the_conformance_checks(name, kwargs):
    check_plugin(f"cams/{name}", kwargs={"num_classes": 3, **kwargs})


def test_multilabel_soft_margin_passes_the_conformance_checks():
    g = torch.Generator().manual_seed(0)
    check_plugin("losses/multilabel_soft_margin", inputs=(torch.randn(2, 3, generator=g),
                                                          torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])))
