"""The affinity distribution's entry points are discovered and built through the wsss_kit registry,
under the names configs have always used (``refiners/psa_rw``, ``refiners/irn_rw``)."""

from __future__ import annotations

import importlib.metadata

import pytest

import wsss_kit
from wsss_affinity import IRNRefiner, PSARefiner
from wsss_kit.registry import default_registry
from wsss_kit.testing import check_plugin

DIST = "wsss-kit-affinity"


def test_registry_lists_the_refiners_from_this_distribution():
    version = importlib.metadata.version(DIST)
    found = {(i.kind, i.name): i for i in wsss_kit.list_plugins(load=True) if i.dist == DIST}
    assert set(found) == {("refiners", "psa_rw"), ("refiners", "irn_rw")}
    for info in found.values():
        assert info.version == version and info.status == "ok", info.error
    assert found[("refiners", "psa_rw")].target == "wsss_affinity.affinity:PSARefiner"
    assert found[("refiners", "irn_rw")].target == "wsss_affinity.irn:IRNRefiner"
    assert default_registry().get("refiners", "psa_rw") is PSARefiner
    assert default_registry().get("refiners", "irn_rw") is IRNRefiner


TINY_PSA = dict(stem_width=4, widths=((4, 4), (4, 8), (8, 8), (8, 16)), depths=(1, 1, 1, 1),
                bottleneck_widths=(8, 16), dropouts=(0.0, 0.0), embed_widths=(4, 4, 8), embed_dim=8)
TINY_IRN = dict(backbone="test_resnet", width=8, dp_widths=(8, 8, 16, 16, 16, 16, 16), dp_groups=(2, 4, 4, 4, 4, 4, 4))


@pytest.mark.parametrize("name, kwargs, sizes", [
    # the training pairs need a feature grid of at least 5x9 (psa_rw) / 10x19 (irn_rw) cells
    ("psa_rw", TINY_PSA, ((48, 80), (56, 88))),
    ("irn_rw", TINY_IRN, ((40, 80), (44, 84))),
])
def test_refiners_pass_the_conformance_checks(name, kwargs, sizes):
    check_plugin(f"refiners/{name}", kwargs=kwargs, num_classes=3, sizes=sizes)


