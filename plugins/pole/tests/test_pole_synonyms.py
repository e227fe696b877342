"""POLE's synonym selection (`prompts/pole_synonyms`): tables, masking, argmax selection, cache.

Selection logic is checked with known embeddings (the tiny CLIP's encoders replaced by functions
of the input); the cache and the end-to-end path run the real tiny random CLIP on a few synthetic
images with random CAMs. CPU only, no downloads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import wsss_kit
from wsss_kit.clip import TINY_CLIP, CLIPModel, load_clip
from wsss_kit.data import SyntheticDataset
from wsss_kit.data.artifacts import save_cams
from wsss_kit.data.palette import VOC_CLASSES
from wsss_pole.selection_cache import SelectionCacheError, read_selection_cache, write_selection_cache
from wsss_pole.synonym_table import SynonymTableError, canonical_sha256, load_synonyms
from wsss_pole.synonyms import PoleSynonyms, candidate_similarities, clip_input, mask_image

SYNTH = {  # a table for the synthetic dataset's classes
    "ball": ["sphere", "orb"],
    "box": ["crate", "carton"],
    "kite": ["glider", "flyer"],
    "boat": ["ship", "vessel"],
    "tree": ["oak", "pine"],
}


def tiny_clip(seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    return load_clip(TINY_CLIP, precision="fp32")


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    return tiny_clip(0)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticDataset, Path]:
    """4 synthetic 48×40 images with random CAMs saved as the pipeline saves them."""
    data = SyntheticDataset("train", num_images=4, image_size=(48, 40), seed=3)
    cam_dir = tmp_path_factory.mktemp("cams")
    gen = torch.Generator().manual_seed(0)
    for i in range(len(data)):
        sample = data[i]
        cams = torch.rand(data.num_classes, 24, 20, generator=gen) * sample["labels"][:, None, None]
        save_cams(cam_dir / f"{sample['name']}.npz", cams, sample["labels"])
    return data, cam_dir


# ------------------------------------------------------------------------------------ tables
def test_voc_table_is_table_s1() -> None:
    table = load_synonyms("voc")
    assert len(table) == 20 and all(len(v) == 3 for v in table.entries.values())
    cands = PoleSynonyms().candidates(VOC_CLASSES)
    assert len(cands) == 20 and all(len(c) == 4 for c in cands)
    by_name = dict(zip(VOC_CLASSES, cands))
    assert by_name["person"] == ["player", "person", "individual", "human"]
    assert by_name["diningtable"] == ["dining table", "kitchen table", "dinner table", "breakfast table"]
    assert by_name["tvmonitor"] == ["tv monitor", "television", "display screen", "flat screen"]
    assert by_name["bicycle"] == ["bicycle", "bike", "cycle", "pedal bike"]
    assert by_name["motorbike"] == ["motorbike", "motorcycle", "bike", "scooter"]  # "bike" twice: allowed
    assert PoleSynonyms().prompts(["person"]) == ["A photo of player."]
    assert PoleSynonyms(num_synonyms=1).candidates(["cat"]) == [["cat", "feline"]]


def test_table_formats_agree(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(SYNTH))
    (tmp_path / "w.json").write_text(json.dumps({"source": "me", "synonyms": SYNTH}))
    (tmp_path / "t.yaml").write_text("".join(f"{k}: [{', '.join(v)}]\n" for k, v in SYNTH.items()))
    (tmp_path / "t.csv").write_text("class,synonym 1,synonym 2\n" + "".join(
        f"{k}, {v[0]},{v[1]},,\n" for k, v in SYNTH.items()))
    (tmp_path / "t.tsv").write_text("".join(f"{k}\t{v[0]}\t{v[1]}\n" for k, v in SYNTH.items()))
    names = SyntheticDataset.class_names
    expected = PoleSynonyms(SYNTH).candidates(names)
    assert expected[0] == ["ball", "sphere", "orb"]
    for f in ("t.json", "w.json", "t.yaml", "t.csv", "t.tsv"):
        assert PoleSynonyms(tmp_path / f).candidates(names) == expected, f
    uneven = dict(SYNTH, ball=["sphere"])  # m may differ between classes
    assert PoleSynonyms(uneven).candidates(names)[0] == ["ball", "sphere"]


@pytest.mark.parametrize("table, match", [
    ({"ball": []}, r"<mapping>: class 'ball' has an empty synonym list"),
    ({"ball": ["orb", "  "]}, r"class 'ball', synonym 2 is blank"),
    ({"ball": ["orb", "Orb"]}, r"class 'ball' lists 'Orb' twice"),
    ({"ball": "orb"}, r"class 'ball' must map to a list"),
    ({"ball": ["orb", 3]}, r"class 'ball', synonym 2 is int"),
    ({}, r"is empty"),
])
def test_table_errors(table: dict, match: str) -> None:
    with pytest.raises(SynonymTableError, match=match):
        load_synonyms(table)


def test_file_errors_name_file_and_class(tmp_path: Path) -> None:
    missing = {k: v for k, v in SYNTH.items() if k not in ("kite", "tree")}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(missing))
    with pytest.raises(SynonymTableError, match=r"mine\.json has no entry for classes 'kite'.*'tree'"):
        PoleSynonyms(path).candidates(SyntheticDataset.class_names)
    path.write_text(json.dumps(dict(SYNTH, box=[])))
    with pytest.raises(SynonymTableError, match=r"mine\.json: class 'box' has an empty synonym list"):
        PoleSynonyms(path)
    path.write_text('{"ball": ["orb"], "ball": ["sphere"]}')
    with pytest.raises(SynonymTableError, match=r"mine\.json: class 'ball' appears twice"):
        PoleSynonyms(path)
    csv = tmp_path / "mine.csv"
    csv.write_text("ball,orb\nbox\n")
    with pytest.raises(SynonymTableError, match=r"mine\.csv, line 2: class 'box' has an empty synonym list"):
        PoleSynonyms(csv)
    csv.write_text("ball,orb,,sphere\n")
    with pytest.raises(SynonymTableError, match=r"mine\.csv, line 1: class 'ball', synonym 2 is blank"):
        PoleSynonyms(csv)
    csv.write_text("ball,orb\nball,sphere\n")
    with pytest.raises(SynonymTableError, match=r"class 'ball' appears twice \(lines 1 and 2\)"):
        PoleSynonyms(csv)
    with pytest.raises(SynonymTableError, match="does not exist"):
        PoleSynonyms(tmp_path / "nope.json")
    (tmp_path / "mine.xml").write_text("<ball/>")
    with pytest.raises(SynonymTableError, match=r"mine\.xml: unknown format '\.xml'"):
        PoleSynonyms(tmp_path / "mine.xml")
    # the VOC table keyed by "player": without the override "person" is missing, with a hint
    with pytest.raises(SynonymTableError, match=r"'person' \(looked for 'person'\).*class_name_overrides"):
        PoleSynonyms("voc", class_name_overrides={}).candidates(["person"])
    with pytest.raises(SynonymTableError, match=r"lists its own class word 'player'"):
        PoleSynonyms({"person": ["player", "human"]}, class_name_overrides={"person": "player"}).candidates(["person"])
    with pytest.raises(SynonymTableError, match=r"class 'ball' has 2 synonyms, but num_synonyms=3"):
        PoleSynonyms(SYNTH, num_synonyms=3)


# ------------------------------------------------------------------------------------ masking and scores
def test_mask_image_hand_computed() -> None:
    image = torch.tensor([[[1.0, 0.5], [0.2, 0.0]]] * 3)  # (3, 2, 2)
    cams = torch.tensor([[[1.0, 0.0], [0.5, 2.0]], [[0.0, 1.0], [1.0, -1.0]]])  # clamped to [0, 1]
    out = mask_image(image, cams)
    assert out.shape == (2, 3, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[1.0, 0.0], [0.1, 0.0]]))
    assert torch.allclose(out[1, 2], torch.tensor([[0.0, 0.5], [0.2, 0.0]]))
    small = mask_image(torch.ones(3, 4, 4), torch.ones(1, 2, 2))  # CAM resized to the image
    assert small.shape == (1, 3, 4, 4) and torch.allclose(small, torch.ones_like(small))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        mask_image(torch.ones(4, 2, 2), cams)


def test_clip_input_sizes() -> None:
    x = torch.rand(2, 3, 30, 60)
    assert clip_input(x, 16).shape == (2, 3, 16, 16)
    assert clip_input(x, 16, "stretch").shape == (2, 3, 16, 16)
    x = torch.zeros(1, 3, 10, 30)
    x[..., 10:20] = 1.0  # the centre third survives CLIP's centre crop, nothing else
    assert torch.equal(clip_input(x, 10), torch.ones(1, 3, 10, 10))
    with pytest.raises(ValueError, match="resize must be"):
        clip_input(x, 10, "pad")


def test_candidate_similarities_hand_computed() -> None:
    img = torch.tensor([[3.0, 4.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    assert torch.allclose(candidate_similarities(img, text), torch.tensor([[0.6, 0.8, -0.6]]))


# ------------------------------------------------------------------------------------ selection (known embeddings)
RED, GREEN, BLUE = torch.eye(3)
WORDS = {"ball": BLUE, "sphere": RED, "orb": GREEN, "box": BLUE, "crate": BLUE, "carton": RED + 0.2 * GREEN}


def fake_clip(monkeypatch: pytest.MonkeyPatch) -> tuple[CLIPModel, list[int]]:
    """A tiny CLIP whose image embedding is the mean RGB of its input and whose text embedding is
    WORDS[word] for "A photo of {word}."; counts the images encoded."""
    model = tiny_clip(0)
    seen = [0]

    def encode_image(images: torch.Tensor) -> torch.Tensor:
        seen[0] += images.shape[0]
        return images.mean(dim=(2, 3))

    def encode_text(texts: list[str]) -> torch.Tensor:
        return torch.stack([WORDS[t[len("A photo of "):-1]] for t in texts])

    monkeypatch.setattr(model, "encode_image", encode_image)
    monkeypatch.setattr(model, "encode_text", encode_text)
    return model, seen


def red_green_image() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(3, 16, 16)
    image[0, :, :8] = 1.0  # left half red
    image[1, :, 8:] = 1.0  # right half green
    left = torch.zeros(16, 16)
    left[:, :8] = 1.0
    return image, left


def test_select_picks_argmax_of_cosine(monkeypatch: pytest.MonkeyPatch) -> None:
    model, seen = fake_clip(monkeypatch)
    pole = PoleSynonyms({"ball": ["sphere", "orb"], "box": ["crate", "carton"]}, image_size=16)
    names = ["ball", "box"]
    image, left = red_green_image()
    right = 1.0 - left
    cams = torch.stack([torch.stack([left, left]), torch.stack([right, left]), torch.stack([left, right])])
    labels = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    out = pole.select(image.expand(3, -1, -1, -1), cams, labels, names, model)
    # ball on the red half -> "sphere" (red); ball on the green half -> "orb" (green);
    # box on red -> "carton" (red + 0.2 green); box on green -> "carton" too (only one with green).
    assert out == [{0: "sphere", 1: "carton"}, {0: "orb"}, {1: "carton"}]
    assert seen[0] == 4  # one masked image per present class
    # the same through explicit cosines
    masked = clip_input(mask_image(image, cams[1, :1]), 16)
    sims = candidate_similarities(masked.mean(dim=(2, 3)), torch.stack([WORDS[w] for w in ["ball", "sphere", "orb"]]))
    assert ["ball", "sphere", "orb"][int(sims.argmax())] == "orb"
    # batching does not change the result; images of different sizes in one call
    assert pole.select(list(image.expand(3, -1, -1, -1)), list(cams), labels, names, model, batch_size=1) == out
    assert pole.select([image, image[:, :8, :8]], [cams[0], cams[0]], labels[:2], names, model)[1] == {0: "sphere"}


def test_select_ties_go_to_the_class_word(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = fake_clip(monkeypatch)
    pole = PoleSynonyms({"box": ["crate", "carton"]}, image_size=16)
    image = torch.zeros(3, 16, 16)
    image[2] = 1.0  # blue: "box" and "crate" are both exactly blue
    out = pole.select(image[None], torch.ones(1, 1, 16, 16), torch.ones(1, 1), ["box"], model)
    assert out == [{0: "box"}]


def test_select_input_errors(clip: CLIPModel) -> None:
    pole = PoleSynonyms(SYNTH)
    names = SyntheticDataset.class_names
    with pytest.raises(ValueError, match="must match"):
        pole.select(torch.rand(2, 3, 8, 8), torch.rand(1, 5, 8, 8), torch.ones(2, 5), names, clip)
    with pytest.raises(ValueError, match=r"C = 5 classes"):
        pole.select(torch.rand(1, 3, 8, 8), torch.rand(1, 4, 8, 8), torch.ones(1, 5), names, clip)
    with pytest.raises(TypeError, match="needs the CLIP model"):
        pole.select(torch.rand(1, 3, 8, 8), torch.rand(1, 5, 8, 8), torch.ones(1, 5), names, None)


# ------------------------------------------------------------------------------------ dataset, cache, forward
def test_select_dataset_cache_round_trip(tmp_path: Path, clip: CLIPModel, synth, monkeypatch) -> None:
    data, cam_dir = synth
    cache = tmp_path / "sel.json"
    pole = PoleSynonyms(SYNTH, cache=cache)
    first = pole.select_dataset(data, cam_dir, clip, batch_size=3, progress=False)
    assert sorted(first) == data.names
    for i, name in enumerate(data.names):
        present = set(torch.nonzero(data[i]["labels"]).flatten().tolist())
        assert set(first[name]) == present
        assert all(first[name][c] in pole.candidates(data.class_names)[c] for c in present)
    doc = read_selection_cache(cache)
    assert doc["complete"] and doc["header"]["synonyms_sha256"] == canonical_sha256(
        dict(zip(data.class_names, pole.candidates(data.class_names))))
    assert doc["header"]["dataset"]["num_images"] == 4 and doc["header"]["clip"]["name"] == TINY_CLIP
    # reload: identical, without touching CLIP's image encoder
    again = PoleSynonyms(SYNTH, cache=cache)
    monkeypatch.setattr(clip, "encode_image", lambda *a, **k: pytest.fail("recomputed a cached selection"))
    assert again.select_dataset(data, cam_dir, clip, progress=False) == first
    assert PoleSynonyms(SYNTH, cache=cache).load_cache() == first
    monkeypatch.undo()
    # the cache is deterministic: the same selections from scratch
    assert PoleSynonyms(SYNTH, cache=tmp_path / "b.json").select_dataset(data, cam_dir, clip, progress=False) == first


def test_partial_cache_resumes(tmp_path: Path, clip: CLIPModel, synth, monkeypatch) -> None:
    data, cam_dir = synth
    cache = tmp_path / "sel.json"
    full = PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False)
    doc = json.loads(cache.read_text())
    for name in data.names[1:3]:
        del doc["selections"][name]
    doc["complete"] = False
    cache.write_text(json.dumps(doc))
    encoded = []
    real = clip.encode_image
    monkeypatch.setattr(clip, "encode_image", lambda x: encoded.append(x.shape[0]) or real(x))
    assert PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False) == full
    assert sum(encoded) == sum(len(full[n]) for n in data.names[1:3])  # only the two missing images
    assert read_selection_cache(cache)["complete"]


def test_cache_from_other_settings_is_an_error(tmp_path: Path, clip: CLIPModel, synth) -> None:
    data, cam_dir = synth
    cache = tmp_path / "sel.json"
    PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False)
    other_table = dict(SYNTH, kite=["glider", "windsock"])
    with pytest.raises(SelectionCacheError, match=r"synonyms_sha256.*'kite'.*rebuild=True"):
        PoleSynonyms(other_table, cache=cache).select_dataset(data, cam_dir, clip, progress=False)
    with pytest.raises(SelectionCacheError, match=r"synonyms_sha256"):
        PoleSynonyms(other_table, cache=cache).load_cache()
    bigger = SyntheticDataset("train", num_images=5, image_size=(48, 40), seed=3)
    with pytest.raises(SelectionCacheError, match=r"dataset\.num_images: cache has 4, now 5"):
        PoleSynonyms(SYNTH, cache=cache).select_dataset(bigger, cam_dir, clip, progress=False)
    with pytest.raises(SelectionCacheError, match=r"dataset\.id"):
        PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False, dataset_id="voc-train")
    with pytest.raises(SelectionCacheError, match=r"clip\.weights_sha256"):
        PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, tiny_clip(1), progress=False)
    with pytest.raises(SelectionCacheError, match=r"template"):
        PoleSynonyms(SYNTH, cache=cache, template="An image of {}.").select_dataset(data, cam_dir, clip, progress=False)
    rebuilt = PoleSynonyms(other_table, cache=cache).select_dataset(data, cam_dir, clip, progress=False, rebuild=True)
    assert sorted(rebuilt) == data.names
    assert read_selection_cache(cache)["header"]["candidates"]["kite"] == ["kite", "glider", "windsock"]
    cache.write_text("{not json")
    with pytest.raises(SelectionCacheError, match="not valid JSON"):
        PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False)


def test_missing_cam_file_names_it(tmp_path: Path, clip: CLIPModel, synth) -> None:
    data, _ = synth
    with pytest.raises(wsss_kit.DataError, match=r"train_00000\.npz does not exist"):
        PoleSynonyms(SYNTH).select_dataset(data, tmp_path, clip, progress=False)


def test_forward_features(tmp_path: Path, clip: CLIPModel, synth) -> None:
    data, cam_dir = synth
    names = data.class_names
    cache = tmp_path / "sel.json"
    chosen = PoleSynonyms(SYNTH, cache=cache).select_dataset(data, cam_dir, clip, progress=False)
    pole = PoleSynonyms(SYNTH, cache=cache)  # fresh: reads the cache on first use
    plain = pole(names, clip=clip)
    assert plain.shape == (5, 32)
    assert torch.allclose(plain, clip.encode_text([f"A photo of {n}." for n in names]), atol=1e-6)
    labels = torch.stack([data[i]["labels"] for i in range(2)])
    out = pole(names, clip=clip, image_names=data.names[:2], labels=labels)
    assert out.shape == (2, 5, 32)
    for b, name in enumerate(data.names[:2]):
        for c in range(5):
            word = chosen[name].get(c, names[c])  # absent classes: the class word's prompt
            assert torch.allclose(out[b, c], clip.encode_text([f"A photo of {word}."])[0], atol=1e-6)
    normed = PoleSynonyms(SYNTH, normalize=True)(names, clip=clip, selections=[chosen[data.names[0]]])
    assert torch.allclose(normed.norm(dim=-1), torch.ones(1, 5), atol=1e-5)
    with pytest.raises(KeyError, match=r"'nope' has no synonym selection"):
        pole(names, clip=clip, image_names=["nope"])
    with pytest.raises(ValueError, match="labelled present but have no selected word"):
        pole(names, clip=clip, selections=[{}], labels=torch.ones(1, 5))
    with pytest.raises(ValueError, match="selections were made for classes"):
        pole(list(reversed(names)), clip=clip, image_names=data.names[:1])
    with pytest.raises(SelectionCacheError, match="run PoleSynonyms.select_dataset"):
        PoleSynonyms(SYNTH, cache=tmp_path / "none.json")(names, clip=clip, image_names=data.names[:1])


def test_tiny_clip_smoke_and_frequencies(clip: CLIPModel, synth) -> None:
    data, cam_dir = synth
    pole = PoleSynonyms(SYNTH, resize="stretch")
    chosen = pole.select_dataset(data, cam_dir, clip, progress=False)
    freq = pole.frequencies(data.class_names)
    assert freq and all(abs(sum(f.values()) - 1.0) < 1e-9 for f in freq.values())
    n_instances = sum(len(v) for v in chosen.values())
    assert n_instances == sum(int(data[i]["labels"].sum()) for i in range(len(data)))
    assert not list(pole.parameters()) and not pole.learnable


def test_forward_accepts_prompt_words_for_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CLIMS calls the strategy with its prompt words ("player"); VOC selections use "person"."""
    model, _ = fake_clip(monkeypatch)
    monkeypatch.setattr(model, "encode_text", lambda texts: torch.randn(len(texts), 3))
    pole = PoleSynonyms(cache=tmp_path / "voc.json")
    header = pole.cache_header(VOC_CLASSES, model, {"id": "hand-made"})
    write_selection_cache(pole.cache_path, header, {"img": {"person": "human"}}, complete=True)
    assert pole.load_cache() == {"img": {14: "human"}}
    words = [c[0] for c in pole.candidates(VOC_CLASSES)]
    assert words[14] == "player" and words[10] == "dining table"
    assert pole(words, clip=model, image_names=["img"]).shape == (1, 20, 3)


def test_registered_entry_point() -> None:
    names = {p.name for p in wsss_kit.list_plugins("prompts")}
    if "pole_synonyms" not in names:
        pytest.skip("wsss-kit-pole is not installed (entry points unavailable)")
    pole = wsss_kit.create("prompts", "pole_synonyms", num_synonyms=2)
    assert isinstance(pole, wsss_kit.PromptStrategy) and isinstance(pole, PoleSynonyms)
    assert PoleSynonyms.wsss_api_version == "1.0"
