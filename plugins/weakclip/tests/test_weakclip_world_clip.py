"""refiners/weakclip on the embedded world's CLIP ``wsss-synthetic-clip`` (open_clip tokenizer, context
length 32, 16 × 16 patch tokens on 128-px images) with ``clip_weights: default``: the shipped float16
``released:wsss_synthetic_clip`` file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import wsss_kit.weights.released as released_module
from wsss_kit.clip import load_clip
from wsss_kit.clip.configs import SYNTHETIC_CLIP
from wsss_kit.data import SyntheticDataset
from wsss_kit.weights import save_packaged_state_dict
from wsss_weakclip.refiner import WeakCLIPRefiner

NAMES = tuple(SyntheticDataset.class_names)
DIRECT = dict(scales=(1.0,), base_size=None, flip=False, window=512, crf=None)  # one window, one view


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, torch.Tensor]]:
    """A random synthetic CLIP saved as the packaged file; yields its float16-rounded state dict."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    clip = load_clip(SYNTHETIC_CLIP, frozen=False, precision="fp32").model
    save_packaged_state_dict(clip, folder / "wsss_synthetic_clip.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(released_module, "PACKAGED_DIR", folder)
        for _name, _entry in list(released_module.RELEASED.items()):  # stand-in files: not the shipped SHA-256
            if _entry.packaged:
                mp.setitem(released_module.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
        yield {k: v.half().float() if v.is_floating_point() else v for k, v in clip.state_dict().items()}


def test_weakclip_on_the_synthetic_clip(shipped):
    torch.manual_seed(0)
    ref = WeakCLIPRefiner(class_names=NAMES, clip_model=SYNTHETIC_CLIP, crf_workers=0, loss_crf_workers=0,
                          clip_precision="fp32", **DIRECT)
    clip = ref.net.clip
    got = clip.model.state_dict()
    assert set(got) == set(shipped) and all(torch.equal(got[k], shipped[k]) for k in shipped)
    assert clip.context_length == 32
    images = torch.rand(1, 3, 128, 128)
    seeds = torch.randint(0, 6, (1, 128, 128))
    out = ref.training_step({"image": images, "target": seeds})
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(p.grad is None for p in clip.parameters())
    probs = ref.refine(images, None, None)
    assert probs.shape == (1, 6, 128, 128) and torch.allclose(probs.sum(1), torch.ones(1, 128, 128), atol=1e-4)
