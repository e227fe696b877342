"""The harness that runs the official WeakCLIP code beside ours (benchmarks/weakclip_official.py).

The official checkout and mmcv/mmseg are not here; a stand-in checkout with the same module
names (``weakclip.dgcnutils``, ``weakclip.heads``) checks the adaptations the harness applies at
import time: the CRF gets a copy of the probabilities (the official in-place clamp must not reach
the caller's array, as on a GPU), the k-NN helper's ``device='cuda'`` maps to the run's device,
and the official tensors made with ``torch.empty`` are not what random weights use.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from benchmarks import weakclip_official as wo
from benchmarks import weakclip_step

DGCNUTILS = """
import torch
import numpy as np

def dgcn_cacul_knn_matrix_(feature_map, k=10):
    return torch.zeros(feature_map.shape[0], 3, 3, device='cuda') + torch.eye(3, 3, device='cuda')

def dgcn_crf_operation(images, probs, img_metas):
    probs[probs < 0.0001] = 0.0001   # in place, as the official code does
    return np.log(probs)
"""
HEADS = """
from .dgcnutils import dgcn_cacul_knn_matrix_, dgcn_crf_operation

def boundary_targets(images, probs):
    return dgcn_crf_operation(images, probs, None)
"""


@pytest.fixture
def stand_in_checkout(tmp_path, monkeypatch):
    package = tmp_path / "weakclip"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "weakclip.py").write_text("")
    (package / "dgcnutils.py").write_text(textwrap.dedent(DGCNUTILS))
    (package / "heads.py").write_text(textwrap.dedent(HEADS))
    monkeypatch.setitem(sys.modules, "mmcv", types.ModuleType("mmcv"))  # not a package: mmcv.ops fails
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m == "weakclip" or m.startswith("weakclip.") or m == "mmcv.ops"]:
        monkeypatch.delitem(sys.modules, name)
    yield tmp_path
    for name in [m for m in sys.modules if m == "weakclip" or m.startswith("weakclip.") or m == "mmcv.ops"]:
        del sys.modules[name]


def test_the_crf_gets_a_copy_and_cuda_maps_to_the_run_device(stand_in_checkout):
    wo.import_official(stand_in_checkout, None, "cpu")
    heads = sys.modules["weakclip.heads"]
    probs = np.array([[1e-6, 0.5], [0.25, 1e-9]], dtype=np.float32)
    before = probs.copy()
    before_seconds = wo.CRF_SECONDS[0]
    out = heads.dgcn_crf_operation(None, probs, None)
    assert np.array_equal(probs, before)  # the caller's array (the loss's tensor on a CPU) is untouched
    assert np.allclose(np.exp(out), np.maximum(before, 1e-4))
    assert wo.CRF_SECONDS[0] > before_seconds  # the CRF's time is counted
    knn = sys.modules["weakclip.dgcnutils"].dgcn_cacul_knn_matrix_(torch.zeros(2, 4, 3, 3))
    assert knn.device.type == "cpu" and torch.equal(knn[1], torch.eye(3))
    ops = sys.modules["mmcv.ops"]
    with pytest.raises(RuntimeError, match="not compiled"):
        ops.point_sample()
    # a second import keeps one wrapper (the CRF timed once per call)
    wo.import_official(stand_in_checkout, None, "cpu")
    start = wo.CRF_SECONDS[0]
    heads.dgcn_crf_operation(None, probs, None)
    assert sys.modules["weakclip.heads"].dgcn_crf_operation is heads.dgcn_crf_operation
    assert wo.CRF_SECONDS[0] - start < 1.0


def test_not_a_checkout_is_refused_naming_the_path(tmp_path):
    with pytest.raises(SystemExit, match=str(tmp_path)):
        wo.import_official(tmp_path)


def test_official_inputs_are_the_official_normalisation_of_the_same_images():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 10, generator=g)
    seeds = torch.randint(0, 21, (2, 8, 10), generator=g)
    x, metas, gt = wo.official_inputs(images, seeds)
    mean, std = torch.tensor(wo.MEAN)[:, None, None], torch.tensor(wo.STD)[:, None, None]
    torch.testing.assert_close(x * std / 255 + mean / 255, images, rtol=0, atol=1e-6)
    assert gt.shape == (2, 1, 8, 10) and gt.dtype == torch.long and torch.equal(gt[:, 0], seeds)
    assert len(metas) == 2 and np.array_equal(metas[0]["img_norm_cfg"]["std"], wo.STD)
    assert metas[0]["img_shape"] == (8, 10, 3)


def test_the_official_variant_is_measured_only_with_a_checkout():
    args = argparse.Namespace(clip_precision="fp32", device="cpu", clip="wsss-tiny-clip", official=None)
    assert "official" not in weakclip_step.variants_for(args)
    args.official = "/some/checkout"
    assert weakclip_step.variants_for(args)[0] == "official"


def test_the_site_packages_are_the_official_pins():
    pins = {name: version for name, version, _ in wo.SITE_PACKAGES}
    assert pins["mmcv"] == "1.4.0" and pins["mmsegmentation"] == "0.19.0"
    for name, version, pattern in wo.SITE_PACKAGES:
        assert version.replace(".", r"\.") in pattern, name
