"""The deeplab distribution's entry points are discovered and built through the wsss_kit registry."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from deeplab_official_layouts import TINY_V2, TINY_WR38

import wsss_kit
from wsss_deeplab import BalancedCELoss, SMPHead
from wsss_kit.testing import check_plugin

DIST = "wsss-kit-deeplab"


def test_registry_lists_the_plugins_with_distribution_and_version():
    version = importlib.metadata.version(DIST)
    found = {(i.kind, i.name): i for i in wsss_kit.list_plugins(load=True) if i.dist == DIST}
    expected = {("heads", "smp"), ("heads", "deeplab_v1_wr38"), ("heads", "deeplab_v2_r101"),
                ("losses", "balanced_ce"), ("losses", "cross_entropy"), ("losses", "deeplab_msc")}
    assert expected <= set(found)
    for key in expected:
        assert found[key].version == version
        assert found[key].status == "ok", found[key].error
    assert found[("heads", "smp")].target == "wsss_deeplab.smp_head:SMPHead"
    assert found[("heads", "deeplab_v2_r101")].target == "wsss_deeplab.deeplab_v2:DeepLabV2R101"


def test_create_builds_them():
    torch.manual_seed(0)
    head = wsss_kit.create("heads", "smp", num_classes=3, encoder_name="tu-test_resnet", arch="Unet")
    assert isinstance(head, SMPHead) and isinstance(head, wsss_kit.RetrainHead)
    with torch.no_grad():
        assert head.eval()(torch.rand(1, 3, 20, 30)).shape == (1, 3, 20, 30)
    loss = wsss_kit.create("losses", f"{DIST}:balanced_ce", ignore_index=0)
    assert isinstance(loss, BalancedCELoss) and loss.ignore_index == 0
    assert SMPHead.wsss_api_version == BalancedCELoss.wsss_api_version == "1.0"


@pytest.mark.parametrize("name, kwargs", [
    ("smp", {"encoder_name": "tu-test_resnet", "arch": "Unet"}),
    ("deeplab_v1_wr38", TINY_WR38),
    ("deeplab_v2_r101", {"backbone_kwargs": TINY_V2}),
])
def test_heads_pass_the_conformance_checks(name, kwargs):
    check_plugin(f"heads/{name}", kwargs={"num_classes": 4, **kwargs})


@pytest.mark.parametrize("name", ["balanced_ce", "cross_entropy", "deeplab_msc"])
def test_losses_pass_the_conformance_checks(name):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (2, 32, 32), generator=g)
    target[0, :4] = 255
    prediction = [logits, logits[..., :4, :4]] if name == "deeplab_msc" else logits
    check_plugin(f"losses/{name}", inputs=(prediction, target))
