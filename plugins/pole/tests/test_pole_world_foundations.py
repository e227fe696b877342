"""cams/clims and cams/pole on the embedded world's foundations: the ``wsss_world_resnet50`` CAM network
and the ``wsss-synthetic-clip`` CLIP (open_clip tokenizer, context length 32), both from their shipped
float16 ``released:`` files (``clip_weights: default`` → ``released:wsss_synthetic_clip``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import timm
import torch

import wsss_kit
import wsss_kit.weights.released as released_module
from wsss_kit.clip import load_clip
from wsss_kit.clip.configs import SYNTHETIC_CLIP
from wsss_kit.data import SyntheticDataset
from wsss_kit.weights import save_packaged_state_dict

NAMES = list(SyntheticDataset.class_names)
LABELS = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0]])
SYNONYMS = {"ball": ["football", "beach ball"], "box": ["crate", "carton"], "kite": ["glider", "flyer"],
            "boat": ["sailboat", "rowboat"], "tree": ["oak", "pine"]}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Random world ResNet and synthetic CLIP saved as the packaged files; yields their float16-rounded
    state dicts while the packaged folder points at them."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    resnet = timm.create_model("wsss_world_resnet50", num_classes=7)
    clip = load_clip(SYNTHETIC_CLIP, frozen=False, precision="fp32").model
    save_packaged_state_dict(resnet, folder / "wsss_world_resnet50.pt")
    save_packaged_state_dict(clip, folder / "wsss_synthetic_clip.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(released_module, "PACKAGED_DIR", folder)
        for _name, _entry in list(released_module.RELEASED.items()):  # stand-in files: not the shipped SHA-256
            if _entry.packaged:
                mp.setitem(released_module.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
        yield {name: {k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()}
               for name, net in (("resnet", resnet), ("clip", clip))}


def _assert_clip(model: torch.nn.Module, want: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_clims_on_the_world_foundations(shipped):
    torch.manual_seed(0)
    clims = wsss_kit.create("cams", "clims", num_classes=5, class_names=NAMES, backbone="wsss_world_resnet50",
                            weights="released:wsss_world_resnet50", clip_model=SYNTHETIC_CLIP, clip_precision="fp32")
    assert clims.clip.context_length == 32 and clims.clip.embed_dim == 64
    _assert_clip(clims.clip.model, shipped["clip"])  # clip_weights left at "default": the shipped CLIP
    backbone = clims.cam.backbone.state_dict()
    assert all(torch.equal(backbone[k], shipped["resnet"][k]) for k in backbone)
    out = clims(torch.rand(2, 3, 128, 128), LABELS)
    out["loss"].backward()
    assert out["logits"].shape == (2, 5) and torch.isfinite(out["loss"])
    assert clims.cam.classifier.weight.grad is not None
    assert all(p.grad is None for p in clims.clip.parameters())  # the CLIP stays frozen


def test_pole_on_the_world_foundations(shipped):
    torch.manual_seed(0)
    pole = wsss_kit.create("cams", "pole", num_classes=5, class_names=NAMES, backbone="wsss_world_resnet50",
                           weights="released:wsss_world_resnet50", clip_model=SYNTHETIC_CLIP, clip_precision="fp32",
                           synonyms={"synonyms": SYNONYMS})
    _assert_clip(pole.clip.model, shipped["clip"])
    with torch.no_grad():
        text = pole.class_text_features()
        assert text.shape == (5, 64) and torch.isfinite(text).all()
        words = [w for c in pole.synonyms.candidates(NAMES) for w in c]
        tokens = pole.clip.tokenize([f"a photo of {w}." for w in words])
        assert tokens.shape == (len(words), 32)  # the open_clip tokenizer at the architecture's context length
