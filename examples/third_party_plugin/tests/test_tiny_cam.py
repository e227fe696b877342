"""The example plugin's own tests: wsss_kit's conformance checks, then what is specific to TinyCAM.

Run with ``pytest examples/third_party_plugin/tests`` after ``pip install ./examples/third_party_plugin``.
"""

from __future__ import annotations

import torch
from wsss_example_plugin import TinyCAM

import wsss_kit
from wsss_kit.testing import check_plugin


def test_tiny_cam_conforms_to_the_cam_generator_interface():
    # shapes at two sizes, CAMs in [0, 1] and zero for absent classes, gradients to every parameter,
    # determinism under a seed, errors on bad input; every failure is listed in one AssertionError
    check_plugin(TinyCAM, kwargs={"num_classes": 3, "width": 8})


def test_tiny_cam_is_found_through_its_entry_point():
    check_plugin("cams/tiny_cam", kwargs={"num_classes": 3, "width": 8})


def test_width_sets_the_first_block():
    model = TinyCAM(num_classes=2, width=4)
    assert model.features[0].out_channels == 4
    assert model(torch.rand(1, 3, 32, 32))["logits"].shape == (1, 2)
    assert isinstance(model, wsss_kit.CAMGenerator)
