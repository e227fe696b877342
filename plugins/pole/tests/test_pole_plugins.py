"""The pole distribution's plugins pass wsss_kit's conformance checks (wsss_kit.testing.check_plugin).

Tiny models: timm's ``test_resnet`` and the random 2-block ``wsss-tiny-clip``; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsss_kit.clip import TINY_CLIP, CLIPModel, load_clip
from wsss_kit.testing import check_plugin
from wsss_pole.selection_cache import write_selection_cache
from wsss_pole.synonyms import PoleSynonyms

NAMES = ["ball", "box", "kite"]
SYNONYMS = {"ball": ["sphere", "orb"], "box": ["crate", "carton"], "kite": ["glider", "flyer"]}
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
IDS = ["img_a", "img_b"]


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(TINY_CLIP, precision="fp32")


@pytest.fixture(scope="module")
def selection_cache(tmp_path_factory: pytest.TempPathFactory, clip: CLIPModel) -> Path:
    """Each present class of the two test images takes its first synonym."""
    path = tmp_path_factory.mktemp("selection") / "sel.json"
    pole = PoleSynonyms(SYNONYMS)
    words = pole.candidates(NAMES)
    selections = {name: {NAMES[c]: words[c][1] for c in torch.nonzero(row).flatten().tolist()}
                  for name, row in zip(IDS, LABELS)}
    write_selection_cache(path, pole.cache_header(NAMES, clip, {"id": "hand-made"}), selections, complete=True)
    return path


def test_clims_passes_the_conformance_checks():
    check_plugin("cams/clims", kwargs={"num_classes": 3, "class_names": NAMES, "backbone": "test_resnet",
                                       "clip_model": TINY_CLIP}, labels=LABELS)


@pytest.mark.parametrize("adapter", ["vector", "none"])
def test_pole_passes_the_conformance_checks(clip, selection_cache, adapter):
    check_plugin("cams/pole", kwargs={"num_classes": 3, "class_names": NAMES, "backbone": "test_resnet",
                                      "clip_model": clip, "synonyms": {"synonyms": SYNONYMS},
                                      "selection_cache": str(selection_cache), "adapter": adapter},
                 labels=LABELS, names=IDS)


def test_clims_loss_passes_the_conformance_checks(clip):
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(2, 3, 8, 8, generator=g) * LABELS[:, :, None, None]
    check_plugin("losses/clims", inputs={  # the first entry is the prediction that must get a gradient
        "cams": cams, "images": torch.rand(2, 3, 32, 32, generator=g), "labels": LABELS, "clip": clip,
        "class_text": torch.randn(3, clip.embed_dim, generator=g), "background_text": ["a photo of ground."]})


def test_pole_synonyms_passes_the_conformance_checks(clip):
    check_plugin("prompts/pole_synonyms", kwargs={"synonyms": SYNONYMS}, class_names=NAMES, context={"clip": clip})
