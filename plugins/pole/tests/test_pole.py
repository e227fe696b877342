"""POLE (`cams/pole`): selected class words in the CLIMS loss, adapters, the selection command, training.

Tiny models only: timm's ``test_resnet`` CAM backbone and the random 2-block ``wsss-tiny-clip``
(embedding 32); a few synthetic images with random baseline CAMs saved as the pipeline saves them.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import yaml

import wsss_kit
from wsss_kit.clip import TINY_CLIP, CLIPModel, load_clip
from wsss_kit.data import SyntheticDataset
from wsss_kit.data.artifacts import save_cams
from wsss_pole import CLIMS, POLE
from wsss_pole.cli import frequency_table, main
from wsss_pole.presets import POLE_TABLE4, pole_table4_node
from wsss_pole.selection_cache import SelectionCacheError, read_selection_cache, write_selection_cache
from wsss_pole.synonyms import PoleSynonyms

SYNTH = {  # a synonym table for the synthetic dataset's classes
    "ball": ["sphere", "orb"],
    "box": ["crate", "carton"],
    "kite": ["glider", "flyer"],
    "boat": ["ship", "vessel"],
    "tree": ["oak", "pine"],
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(TINY_CLIP, precision="fp32")


@pytest.fixture(scope="module")
def data() -> SyntheticDataset:
    return SyntheticDataset("train", num_images=4, image_size=64, seed=3)


@pytest.fixture(scope="module")
def cam_dir(tmp_path_factory: pytest.TempPathFactory, data: SyntheticDataset) -> Path:
    """Random baseline CAMs of the 4 images, written by ``save_cams`` as ``wsss cam`` writes them."""
    folder = tmp_path_factory.mktemp("cams")
    gen = torch.Generator().manual_seed(0)
    for i in range(len(data)):
        sample = data[i]
        save_cams(folder / f"{sample['name']}.npz", torch.rand(data.num_classes, 16, 16, generator=gen),
                  sample["labels"])
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, data: SyntheticDataset, clip: CLIPModel) -> Path:
    """A hand-made selection cache: every present class of image i takes its candidate 1 + (i + c) % 2."""
    path = tmp_path_factory.mktemp("selection") / "sel.json"
    pole = PoleSynonyms(SYNTH)
    names = list(data.class_names)
    candidates = pole.candidates(names)
    selections = {}
    for i in range(len(data)):
        present = torch.nonzero(data[i]["labels"]).flatten().tolist()
        selections[data.names[i]] = {names[c]: candidates[c][1 + (i + c) % 2] for c in present}
    write_selection_cache(path, pole.cache_header(names, clip, {"id": "hand-made"}), selections, complete=True)
    return path


def make_pole(clip: CLIPModel, cache: Path | None, seed: int = 0, **kwargs) -> POLE:
    torch.manual_seed(seed)
    kwargs.setdefault("synonyms", {"synonyms": SYNTH})
    return POLE(5, list(SyntheticDataset.class_names), backbone="test_resnet", clip_model=clip,
                selection_cache=cache, **kwargs)


def batch(data: SyntheticDataset, indices=(0, 1)) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    samples = [data[i] for i in indices]
    return (torch.stack([s["image"] for s in samples]), torch.stack([s["labels"] for s in samples]),
            [s["name"] for s in samples])


def spy_criterion(model: POLE, monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}
    forward = model.criterion.forward

    def spy(images, cams, labels, **kwargs):
        seen.update(kwargs)
        return forward(images, cams, labels, **kwargs)

    monkeypatch.setattr(model.criterion, "forward", spy)
    return seen


# ---------------------------------------------------------------------------- selected words
def test_pole_forward_uses_the_selected_words_text_features(clip, data, cache, monkeypatch):
    model = make_pole(clip, cache)
    seen = spy_criterion(model, monkeypatch)
    images, labels, names = batch(data)
    out = model(images, labels, names=names)
    text = seen["class_text"]
    expected = PoleSynonyms(SYNTH, cache=cache)(data.class_names, clip=clip, image_names=names, labels=labels)
    assert text.shape == (2, 5, clip.embed_dim) and torch.allclose(text, expected)
    selections = read_selection_cache(cache)["selections"]
    for b, name in enumerate(names):
        for c, cls in enumerate(data.class_names):
            word = selections[name][cls] if labels[b, c] > 0.5 else cls  # absent: the class word
            assert torch.allclose(text[b, c], clip.encode_text([f"A photo of {word}."])[0], atol=1e-6)
    assert any(selections[n][c] != c for n in names for c in selections[n])  # not merely the class words
    assert seen["image_adapter"] is model.image_adapter and seen["text_adapter"] is model.text_adapter
    assert {"loss", "otm", "btm", "cbs", "reg", "logits"} <= set(out) and torch.isfinite(out["loss"])
    # without images the class words' prompts, as CLIMS's: (C, E)
    assert torch.allclose(model.class_text_features(), clip.encode_text([f"A photo of {n}." for n in data.class_names]))


def test_pole_adapters_leave_the_background_suppression_term_alone(clip, data, cache):
    images, labels, names = batch(data)
    plain = make_pole(clip, cache, seed=4, adapter="none")(images, labels, names=names)
    adapted = make_pole(clip, cache, seed=4, adapter="vector")(images, labels, names=names)
    assert adapted["cbs"].item() == pytest.approx(plain["cbs"].item(), rel=1e-6)
    assert adapted["reg"].item() == pytest.approx(plain["reg"].item(), rel=1e-6)
    assert adapted["otm"].item() != pytest.approx(plain["otm"].item(), rel=1e-6)


# ---------------------------------------------------------------------------- adapters and gradients
def test_pole_ratio_vectors_start_at_0_2_and_learn(clip, data, cache):
    model = make_pole(clip, cache).train()
    for adapter in (model.image_adapter, model.text_adapter):
        assert isinstance(adapter.ratio, torch.nn.Parameter) and adapter.ratio.shape == (clip.embed_dim,)
        assert torch.equal(adapter.ratio.detach(), torch.full((clip.embed_dim,), 0.2))
    images, labels, names = batch(data)
    model(images, labels, names=names)["loss"].backward()
    for name, p in model.named_parameters():
        if name.startswith("clip."):
            assert not p.requires_grad and p.grad is None, name  # CLIP gets no gradient
        elif p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for adapter in (model.image_adapter, model.text_adapter):
        assert adapter.ratio.grad.abs().sum() > 0 and adapter.adapter.fc1.weight.grad.abs().sum() > 0
    groups = model.param_groups(2.5e-4)
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0, 1.0]
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in model.adapter_parameters()}
    assert len(model.adapter_parameters()) == 6  # two MLPs of 2 layers + 2 ratio vectors
    clip_ids = {id(p) for p in clip.parameters()}
    assert not any(id(p) in clip_ids for g in groups for p in g["params"])
    assert make_pole(clip, cache, adapter_lr_mult=0.5).param_groups(1.0)[2]["lr"] == pytest.approx(0.5)


def test_pole_fixed_ratio_is_a_constant_and_none_has_no_adapter(clip, data, cache):
    images, labels, names = batch(data)
    fixed = make_pole(clip, cache, adapter="fixed").train()
    assert fixed.image_adapter.ratio.item() == pytest.approx(0.2) and not fixed.image_adapter.ratio.requires_grad
    assert "image_adapter.ratio" in fixed.state_dict()
    assert not any("ratio" in n for n, _ in fixed.named_parameters())
    fixed(images, labels, names=names)["loss"].backward()
    assert fixed.image_adapter.ratio.grad is None and fixed.text_adapter.adapter.fc2.weight.grad is not None
    none = make_pole(clip, cache, adapter="none")
    assert none.image_adapter is None and none.text_adapter is None and none.adapter_parameters() == []
    assert not any("adapter" in n for n in none.state_dict())
    assert [g["lr_mult"] for g in none.param_groups(0.1)] == [1.0, 10.0]
    clims = CLIMS(5, list(SyntheticDataset.class_names), backbone="test_resnet", clip_model=clip)
    assert sum(p.numel() for p in none.parameters()) == sum(p.numel() for p in clims.parameters())
    with pytest.raises(ValueError, match="adapter must be one of"):
        make_pole(clip, cache, adapter="learnable")


# ---------------------------------------------------------------------------- errors
def test_pole_missing_selections_are_clear_errors(clip, data, cache, tmp_path):
    images, labels, names = batch(data)
    model = make_pole(clip, cache)
    with pytest.raises(SelectionCacheError, match=r"no synonym selection for image 'nope' in selection cache "
                                                  r".*sel\.json.*wsss-pole-select CONFIG --cams"):
        model(images, labels, names=[names[0], "nope"])
    missing = tmp_path / "none.json"
    with pytest.raises(SelectionCacheError, match=r"none\.json does not exist; build it .*wsss-pole-select"):
        make_pole(clip, missing)(images, labels, names=names)
    with pytest.raises(SelectionCacheError, match="pass selection_cache="):
        make_pole(clip, None)(images, labels, names=names)
    with pytest.raises(ValueError, match="needs the image ids"):
        model(images, labels)
    with pytest.raises(ValueError, match="3 image ids but the batch has 2"):
        model(images, labels, names=names + ["x"])
    # inference needs neither names nor the cache
    assert set(make_pole(clip, missing)(images)) == {"logits"}
    with torch.no_grad():
        assert make_pole(clip, missing).eval().cams(images, labels, scales=(1.0,), flip=False).shape == (2, 5, 64, 64)


def test_pole_argument_errors(clip, cache):
    with pytest.raises(TypeError, match="does not take prompt="):
        make_pole(clip, cache, prompt={"type": "prompts/template"})
    with pytest.raises(TypeError, match="does not take class_name_overrides="):
        make_pole(clip, cache, class_name_overrides={})
    with pytest.raises(wsss_kit.DataError, match="kite"):  # the table must cover the classes
        make_pole(clip, cache, synonyms={"synonyms": {k: v for k, v in SYNTH.items() if k != "kite"}})
    with pytest.raises(ValueError, match="give the cache once"):
        make_pole(clip, cache, synonyms=PoleSynonyms(SYNTH, cache=cache.parent / "other.json"))
    with pytest.raises(TypeError, match=r"unexpected keywords .*'kite'.*synonyms=\{'synonyms'"):
        make_pole(clip, cache, synonyms=SYNTH)  # a table goes under 'synonyms'


def test_pole_synonyms_as_instance_node_or_keywords(clip, cache):
    instance = PoleSynonyms(SYNTH)
    assert make_pole(clip, cache, synonyms=instance).synonyms is instance and instance.cache_path == cache
    node = {"type": "prompts/pole_synonyms", "synonyms": SYNTH, "num_synonyms": 1}
    model = make_pole(clip, cache, synonyms=node)
    assert model.synonyms.candidates(["ball"]) == [["ball", "sphere"]] and model.synonyms.cache_path == cache


# ---------------------------------------------------------------------------- registry, presets, config
def test_pole_is_registered_with_explicit_keywords(clip, cache):
    found = {(i.kind, i.name): i for i in wsss_kit.list_plugins("cams", load=True)}
    assert found[("cams", "pole")].status == "ok", found[("cams", "pole")].error
    params = inspect.signature(POLE).parameters
    assert {"synonyms", "selection_cache", "adapter", "init_checkpoint", "clip_model", "reg_weight"} <= set(params)
    assert not {"prompt", "prompt_lr_mult", "class_name_overrides", "kwargs"} & set(params)
    with pytest.raises(TypeError, match=r"unexpected keyword 'adaptor'.*did you mean 'adapter'"):
        wsss_kit.create("cams", "pole", num_classes=5, adaptor="vector")
    from wsss_kit.config import build

    node = pole_table4_node("C", backbone="test_resnet", clip_model=TINY_CLIP, class_names=list(SYNTH),
                            synonyms={"synonyms": SYNTH}, selection_cache=str(cache))
    torch.manual_seed(0)
    model = build(node, "cam.model", num_classes=5)  # as the pipeline builds cam.model
    assert isinstance(model, POLE) and model.adapter_mode == "fixed" and model.synonyms.cache_path == cache
    assert pole_table4_node("A", adapter="vector", selection_cache="x", backbone="r") == \
        {"type": "cams/clims", "backbone": "r"}
    assert [POLE_TABLE4[r]["miou"] for r in "ABCD"] == [70.5, 73.6, 73.8, 74.2]


# ---------------------------------------------------------------------------- the selection command
def test_select_command_end_to_end(tmp_path, data, cam_dir, capsys, monkeypatch):
    out = tmp_path / "sel.json"
    config = {
        "run_dir": str(tmp_path / "run"), "seed": 0, "device": "cpu",
        "data": {"train": {"type": "datasets/synthetic", "split": "train", "num_images": 4, "image_size": 64,
                           "seed": 3}},
        "cam": {"model": {"type": "cams/pole", "clip_model": TINY_CLIP, "synonyms": {"synonyms": SYNTH},
                          "selection_cache": str(out)}},
    }
    path = tmp_path / "pole.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--cams", str(cam_dir), "--no-progress", "--batch-size", "3"]) == 0
    text = capsys.readouterr().out
    assert "POLE selections: 4 images" in text and "class word" in text and str(out) in text
    doc = read_selection_cache(out)
    assert doc["complete"] and sorted(doc["selections"]) == data.names
    assert doc["header"]["clip"]["name"] == TINY_CLIP
    assert doc["header"]["candidates"]["ball"] == ["ball", "sphere", "orb"]
    # the same selections as the library call with the same (seeded) CLIP: the cache is reused as it is
    torch.manual_seed(0)
    same = load_clip(TINY_CLIP)
    monkeypatch.setattr(same, "encode_image", lambda *a, **k: pytest.fail("a cached selection was recomputed"))
    pole = PoleSynonyms(SYNTH, cache=out)
    chosen = pole.select_dataset(data, cam_dir, same, progress=False)
    assert {n: {data.class_names[c]: w for c, w in s.items()} for n, s in chosen.items()} == doc["selections"]
    table = frequency_table(pole, data.class_names, chosen)
    for line in table.splitlines()[2:]:
        cls, n = line.split()[:2]
        assert int(n) == sum(cls in s for s in doc["selections"].values())
    # rerun: resumes from the complete cache; --out elsewhere is noted; errors exit with 2
    assert main([str(path), "--cams", str(cam_dir), "--no-progress"]) == 0
    assert main([str(path), "--cams", str(cam_dir), "--no-progress", "--out", str(tmp_path / "b.json")]) == 0
    assert "reads the selection cache" in capsys.readouterr().out
    assert main([str(path), "--cams", str(tmp_path / "missing")]) == 2
    assert "wsss cam BASELINE.yaml" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(path), "--cams", str(tmp_path / "empty"), "--out", str(tmp_path / "c.json"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_select_command_is_a_console_script():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("wsss-pole-select") == "wsss_pole.cli:main"


# ---------------------------------------------------------------------------- training through the engine
def test_pole_trains_through_the_engine_with_image_ids(tmp_path, clip, data, cache, monkeypatch):
    from wsss_kit.engine import TrainConfig, train

    model = make_pole(clip, cache)
    seen: list = []
    real = model.selected_text_features
    monkeypatch.setattr(model, "selected_text_features", lambda names, labels=None: seen.append(names) or
                        real(names, labels))
    config = TrainConfig(steps=2, batch_size=2, lr=2.5e-4, weight_decay=1e-4, device="cpu", log_every=1,
                         checkpoint_every=100)
    result = train(model, data, config, tmp_path / "run")
    assert result.steps == 2 and math.isfinite(result.final_loss)
    assert {"otm", "btm", "cbs", "reg"} <= set(result.history[-1])
    assert len(seen) == 2 and all(isinstance(n, list) and len(n) == 2 for n in seen)
    assert all(isinstance(i, str) and i in data.names for n in seen for i in n)
    saved = torch.load(result.model_path, weights_only=True)
    assert not any(k.startswith("clip.") for k in saved)
    assert "image_adapter.ratio" in saved and "text_adapter.adapter.fc1.weight" in saved
    fresh = make_pole(clip, cache, seed=7)
    fresh.load_weights(str(result.model_path))
    assert torch.equal(fresh.image_adapter.ratio, model.image_adapter.ratio)
    assert not torch.equal(model.image_adapter.ratio.detach(), torch.full_like(model.image_adapter.ratio, 0.2))
