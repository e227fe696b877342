"""POLE's official Adapter layout (``Av``/``At``: ``fc.0``, ``fc.2``, ``ratio_vector``) converted and loaded,
and ``input_space`` for the CLIP users CLIMS and POLE (the CLIP side sees the same images from either space)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_kit.clip import TINY_CLIP, CLIPModel, load_clip
from wsss_kit.errors import WeightsError
from wsss_kit.weights import get_converter
from wsss_pole import CLIMS, POLE
from wsss_pole.adapters import AdaptedFeatures
from wsss_pole.convert import convert_official_adapter, convert_pole_official_adapters
from wsss_pole.selection_cache import write_selection_cache
from wsss_pole.synonyms import PoleSynonyms

NAMES = ["ball", "box", "kite"]
SYNONYMS = {"ball": ["sphere", "orb"], "box": ["crate", "carton"], "kite": ["glider", "flyer"]}
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
IMAGE_IDS = ["img0", "img1"]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(TINY_CLIP, precision="fp32")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, clip: CLIPModel) -> Path:
    path = tmp_path_factory.mktemp("selection") / "sel.json"
    strategy = PoleSynonyms(SYNONYMS)
    candidates = strategy.candidates(NAMES)
    selections = {name: {NAMES[c]: candidates[c][1] for c in torch.nonzero(LABELS[b]).flatten().tolist()}
                  for b, name in enumerate(IMAGE_IDS)}
    write_selection_cache(path, strategy.cache_header(NAMES, clip, {"id": "test"}), selections, complete=True)
    return path


def make_pole(clip: CLIPModel, cache: Path | None = None, seed: int = 0, **kwargs) -> POLE:
    torch.manual_seed(seed)
    return POLE(len(NAMES), NAMES, backbone="test_resnet", clip_model=clip, selection_cache=cache,
                synonyms={"synonyms": SYNONYMS}, **kwargs)


def official_adapter(dim: int, seed: int) -> dict[str, torch.Tensor]:
    """One adapter as the official ``Adapter(dim)`` saves it (a trained-looking ratio, not all 0.2)."""
    g = torch.Generator().manual_seed(seed)
    return {"fc.0.weight": torch.randn(dim // 4, dim, generator=g) / dim ** 0.5,
            "fc.2.weight": torch.randn(dim, dim // 4, generator=g) / (dim // 4) ** 0.5,
            "ratio_vector": torch.rand(dim, generator=g)}


def official_formula(v: torch.Tensor, adapter: dict[str, torch.Tensor]) -> torch.Tensor:
    """POLE's Eqs. 7–8 as the official code computes them, written out:
    ``r ⊙ ReLU(ReLU(v W1ᵀ) W2ᵀ) + (1 − r) ⊙ v`` with r = ratio_vector (both ReLUs: ``fc.1``, ``fc.3``)."""
    w1, w2, r = adapter["fc.0.weight"], adapter["fc.2.weight"], adapter["ratio_vector"]
    hidden = torch.clamp(v @ w1.t(), min=0)
    mlp = torch.clamp(hidden @ w2.t(), min=0)
    return r * mlp + (1 - r) * v


def official_checkpoint(model: POLE, dim: int) -> dict[str, torch.Tensor]:
    """What ``torch.save(model.module.state_dict())`` writes in the official POLE training: the CLIMS CAM
    network in IRN's layout (``resnet50.*`` aliases + ``classifier.weight``) and the adapters under
    ``Av.``/``At.`` and again under their ``adapters.0.``/``adapters.1.`` aliases."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for key, value in model.cam.state_dict().items():
        new = key.replace("backbone.", "resnet50.", 1) if key.startswith("backbone.") else key
        state[new] = value.clone() + (0.01 * torch.randn(value.shape, generator=g) if value.is_floating_point() else 0)
    for prefix, alias, seed in (("Av.", "adapters.0.", 1), ("At.", "adapters.1.", 2)):
        for key, value in official_adapter(dim, seed).items():
            state[prefix + key] = value
            state[alias + key] = value.clone()
    return state


# ---------------------------------------------------------------------------- one adapter
@pytest.mark.parametrize("dim", [32, 512])
def test_converted_adapter_equals_the_official_formula(dim: int) -> None:
    official = official_adapter(dim, seed=3)
    module = AdaptedFeatures(dim, "vector")
    module.load_state_dict(convert_official_adapter(official), strict=True)
    v = torch.randn(6, dim, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(module(v), official_formula(v, official), atol=1e-5)
    # the ReLUs matter on these inputs: without the last one the result differs
    paper = AdaptedFeatures(dim, "vector", final_relu=False)
    paper.load_state_dict(convert_official_adapter(official), strict=True)
    assert not torch.allclose(paper(v), module(v), atol=1e-3)


def test_registered_converter_maps_both_sides(clip: CLIPModel) -> None:
    assert get_converter("pole_official_adapters") is convert_pole_official_adapters
    state = {f"{p}{k}": v for p, seed in (("Av.", 1), ("At.", 2)) for k, v in official_adapter(32, seed).items()}
    converted = convert_pole_official_adapters(state)
    assert sorted(converted) == sorted(f"{side}.{k}" for side in ("image_adapter", "text_adapter")
                                       for k in ("adapter.fc1.weight", "adapter.fc2.weight", "ratio"))
    assert torch.equal(converted["image_adapter.ratio"], state["Av.ratio_vector"])
    assert torch.equal(converted["text_adapter.adapter.fc2.weight"], state["At.fc.2.weight"])
    # the aliases alone are enough too
    aliases = {k.replace("Av.", "adapters.0.").replace("At.", "adapters.1."): v for k, v in state.items()}
    assert all(torch.equal(converted[k], v) for k, v in convert_pole_official_adapters(aliases).items())


@pytest.mark.parametrize("edit, message", [
    (lambda s: [s.pop("Av.ratio_vector"), s.pop("adapters.0.ratio_vector")], r"lacks 'Av\.ratio_vector'"),
    (lambda s: s.pop("adapters.1.ratio_vector"), r"lacks 'adapters\.1\.ratio_vector'"),
    (lambda s: s.update({"Av.fc.0.bias": torch.zeros(8)}), r"unexpected key 'Av\.fc\.0\.bias'.*no bias"),
    (lambda s: s.update({"At.fc.2.weight": torch.zeros(32, 4)}), r"At\.fc\.2\.weight must be \(32, 8\).*got \(32, 4\)"),
    (lambda s: s.update({"Av.ratio_vector": torch.zeros(512)}), r"Av\.ratio_vector must be \(32,\).*got \(512,\)"),
    (lambda s: s.update({"adapters.0.fc.0.weight": torch.zeros(8, 32)}),
     r"adapters\.0\.fc\.0\.weight and Av\.fc\.0\.weight"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith(("At.", "adapters.1."))],
     r"text adapter is missing.*At\.fc\.0\.weight"),
    (lambda s: s.update({"classifier.weight": torch.zeros(3, 8)}), r"not POLE's official adapters.*classifier\.weight"),
])
def test_wrong_layouts_name_the_key(edit, message) -> None:
    state = {}
    for prefix, alias, seed in (("Av.", "adapters.0.", 1), ("At.", "adapters.1.", 2)):
        for key, value in official_adapter(32, seed).items():
            state[prefix + key] = value
            state[alias + key] = value.clone()
    edit(state)
    with pytest.raises(WeightsError, match=message):
        convert_pole_official_adapters(state, source="pole.pth")
    with pytest.raises(WeightsError, match="holds no POLE adapters"):
        convert_pole_official_adapters({})


# ---------------------------------------------------------------------------- a whole official checkpoint
def test_pole_loads_an_official_checkpoint(clip: CLIPModel, tmp_path: Path) -> None:
    model = make_pole(clip)
    state = official_checkpoint(model, clip.embed_dim)
    path = tmp_path / "res50_clims.pth"
    torch.save(state, path)
    fresh = make_pole(clip, seed=1)
    fresh.load_weights(path)
    loaded = fresh.state_dict()
    for key in model.cam.state_dict():
        official_key = key.replace("backbone.", "resnet50.", 1) if key.startswith("backbone.") else key
        assert torch.equal(loaded[f"cam.{key}"], state[official_key]), key
    v = torch.randn(5, clip.embed_dim)
    image_official = {k[len("Av."):]: state[k] for k in state if k.startswith("Av.")}
    text_official = {k[len("At."):]: state[k] for k in state if k.startswith("At.")}
    assert torch.allclose(fresh.image_adapter(v), official_formula(v, image_official), atol=1e-5)
    assert torch.allclose(fresh.text_adapter(v), official_formula(v, text_official), atol=1e-5)
    # adapters in the similarity as the official clip_forward computes it (normalise after mixing)
    sim = (F.normalize(fresh.image_adapter(v), dim=-1) * F.normalize(fresh.text_adapter(v), dim=-1)).sum(-1)
    ref = (F.normalize(official_formula(v, image_official), dim=-1)
           * F.normalize(official_formula(v, text_official), dim=-1)).sum(-1)
    assert torch.allclose(sim, ref, atol=1e-5)


def test_official_checkpoint_needs_vector_adapters_and_the_clip_width(clip: CLIPModel, tmp_path: Path) -> None:
    path = tmp_path / "res50_clims.pth"
    torch.save(official_checkpoint(make_pole(clip), clip.embed_dim), path)
    with pytest.raises(WeightsError, match=r"res50_clims\.pth.*adapter='vector'.*adapter='fixed'"):
        make_pole(clip, adapter="fixed").load_weights(path)
    wide = tmp_path / "official_512.pth"
    torch.save(official_checkpoint(make_pole(clip), 512), wide)
    with pytest.raises(WeightsError,
                       match=r"official_512\.pth: its adapters act on 512-d CLIP embeddings.*embeds in 32"):
        make_pole(clip).load_weights(wide)
    with pytest.raises(WeightsError, match=r"res50_clims\.pth is an official POLE checkpoint.*load it with cams/pole"):
        CLIMS(3, NAMES, backbone="test_resnet", clip_model=clip).load_weights(path)
    broken = official_checkpoint(make_pole(clip), clip.embed_dim)
    broken["At.fc.0.bias"] = torch.zeros(clip.embed_dim // 4)
    torch.save(broken, tmp_path / "bias.pth")
    with pytest.raises(WeightsError, match=r"bias\.pth: unexpected key 'At\.fc\.0\.bias'"):
        make_pole(clip).load_weights(tmp_path / "bias.pth")


# ---------------------------------------------------------------------------- input_space
def _spy_clip_inputs(model, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    encode = model.clip.encode_image

    def spy(images, **kwargs):
        seen.append(images.detach().clone())
        return encode(images, **kwargs)

    monkeypatch.setattr(model.clip, "encode_image", spy)
    return seen


@pytest.mark.parametrize("clip_normalization", ["imagenet", "clip"])
def test_clims_clip_side_sees_the_same_images_from_either_space(clip: CLIPModel, clip_normalization: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    outs, seen = [], []
    for space, x in (("unit", images), ("normalized", (images - MEAN) / STD)):
        torch.manual_seed(0)
        model = CLIMS(3, NAMES, backbone="test_resnet", clip_model=clip, input_space=space,
                      clip_normalization=clip_normalization)
        assert model.cam.input_space == space
        seen.append(_spy_clip_inputs(model, monkeypatch))
        outs.append(model(x, LABELS))
        monkeypatch.undo()
    assert torch.allclose(seen[0][0], seen[1][0], atol=1e-5)  # CLIP's masked inputs, in its normalisation
    for key in ("loss", "otm", "btm", "cbs", "reg", "logits"):
        assert torch.allclose(outs[0][key], outs[1][key], atol=1e-5, rtol=1e-4), key
    if clip_normalization == "clip":  # what CLIP got is CLIP-normalised: un-normalise → images in [0, 1]
        assert seen[0][0].min() < -1.0


def test_pole_input_space(clip: CLIPModel, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    outs, seen = [], []
    for space, x in (("unit", images), ("normalized", (images - MEAN) / STD)):
        model = make_pole(clip, cache, input_space=space)
        seen.append(_spy_clip_inputs(model, monkeypatch))
        outs.append(model(x, LABELS, names=IMAGE_IDS))
        with torch.no_grad():
            outs[-1]["cams"] = model.eval().cams(x, LABELS, scales=(1.0,), flip=True)
        monkeypatch.undo()
    assert torch.allclose(seen[0][0], seen[1][0], atol=1e-5)
    for key in ("loss", "otm", "btm", "cbs", "reg", "logits", "cams"):
        assert torch.allclose(outs[0][key], outs[1][key], atol=1e-5, rtol=1e-4), key
    with pytest.raises(ValueError, match=r"input_space must be one of 'unit', 'normalized'"):
        make_pole(clip, cache, input_space="imagenet")
    with pytest.raises(ValueError, match=r"input_space must be one of 'unit', 'normalized'"):
        wsss_kit.create("cams", "clims", num_classes=3, class_names=NAMES, backbone="test_resnet",
                        clip_model=clip, input_space="0-1")


# ---------------------------------------------------------------------------- clip_model as data in a config
DOC_ARCH = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
"""The tiny architecture of docs/clip.md's YAML example."""


def test_clims_clip_model_inline_mapping_from_a_config() -> None:
    from wsss_kit.config import build, parse_config

    cfg = parse_config("""
model:
  type: cams/clims
  num_classes: 3
  class_names: [ball, box, kite]
  backbone: test_resnet
  clip_weights: null
  clip_model:
    embed_dim: 16
    vision_cfg: {image_size: 32, layers: 1, width: 32, head_width: 16, patch_size: 8}
    text_cfg: {context_length: 77, vocab_size: 49408, width: 32, heads: 2, layers: 1}
""")
    assert cfg["model"]["clip_model"] == DOC_ARCH
    model = build(cfg["model"], "model")
    assert model.clip.name.startswith("custom-clip-") and model.clip.embed_dim == 16
    out = model(torch.rand(2, 3, 64, 64), LABELS)
    assert torch.isfinite(out["loss"])
    bad = dict(cfg["model"], clip_model={**DOC_ARCH, "text_cfg": {**DOC_ARCH["text_cfg"], "heads": 3}})
    with pytest.raises(ValueError, match=r"model \(cams/clims\).*text_cfg\.width \(32\) must be a multiple of "
                                         r"text_cfg\.heads \(3\)"):
        build(bad, "model")
