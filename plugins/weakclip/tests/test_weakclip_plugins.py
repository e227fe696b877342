"""The weakclip distribution's plugins pass wsss_kit's conformance checks (wsss_kit.testing.check_plugin).

Tiny random CLIP (``wsss-tiny-clip``) on CPU; nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from wsss_kit.clip import TINY_CLIP, load_clip
from wsss_kit.testing import check_plugin

NAMES = ("ball", "box", "kite")
TINY = dict(class_names=NAMES, clip_model="wsss-tiny-clip", clip_weights=None, n_context=2, crf_workers=0,
            loss_crf_workers=0)
DIRECT = dict(scales=(1.0,), base_size=None, flip=False, window=512, crf=None)  # one window, one view


@pytest.mark.parametrize("options, sizes", [
    ({}, ((32, 32), (40, 48))),                            # probabilities (B, C + 1, H, W)
    ({"restrict_to_labels": True}, ((32, 32), (40, 48))),  # the paper preset's masks, 255 off the labels
    ({"scales": (1.0, 0.75), "flip": True, "window": 48, "stride": 32}, ((64, 64), (72, 88))),  # sliding windows
], ids=["probabilities", "masks", "multiscale"])
def test_weakclip_refiner_passes_the_conformance_checks(options, sizes):
    check_plugin("refiners/weakclip", kwargs={**TINY, **DIRECT, **options}, sizes=sizes)


def test_weakclip_losses_pass_the_conformance_checks():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    seeds = torch.randint(0, 4, (2, 32, 32), generator=g)
    seeds[0, :4] = 255
    check_plugin("losses/balanced_seed", kwargs={"size": 8}, inputs=(logits, seeds))
    check_plugin("losses/crf_boundary", kwargs={"size": 8, "workers": 0},
                 inputs=(logits, torch.rand(2, 3, 32, 32, generator=g)))


def test_weakclip_context_passes_the_conformance_checks():
    torch.manual_seed(0)
    check_plugin("prompts/weakclip_context", kwargs={"n_ctx": 4}, class_names=NAMES,
                 context={"clip": load_clip(TINY_CLIP, precision="fp32")})
