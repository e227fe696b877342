"""The synthetic world's subtypes, captions and attribute tags (wsss_kit.data.captions)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wsss_kit.data import SyntheticDataset
from wsss_kit.data.captions import (
    ATTRIBUTES,
    BACKGROUND_WORDS,
    CLASS_WORDS,
    SUBTYPE_WORDS,
    SYNONYMS,
    attribute_vector,
    caption_scene,
    scene_attributes,
)
from wsss_kit.data.synthetic_scene import CLASS_NAMES, SUBTYPES


@pytest.fixture(scope="module")
def scenes():
    data = SyntheticDataset("pretrain", num_images=300, image_size=96, seed=7)
    return [data.scene(i) for i in range(len(data))]


def _words_of(name: str) -> set[str]:
    return set(CLASS_WORDS[name]) | {w for sub in SUBTYPES[name] for w in SUBTYPE_WORDS[sub]}


def test_objects_describe_the_mask(scenes) -> None:
    for scene in scenes:
        assert sorted({o.kind for o in scene.objects}) == scene.classes
        assert sum(o.area for o in scene.objects) == int((scene.mask > 0).sum())
        for obj in scene.objects:
            assert obj.subtype in SUBTYPES[CLASS_NAMES[obj.kind - 1]] and obj.area > 0
        assert 0.0 <= scene.cloud_cover <= 1.0 and scene.rocks >= 0
        assert scene.water.shape == scene.mask.shape and not (scene.water & (scene.mask > 0)).any()
        assert scene.water.any() == scene.has_water


def test_every_subtype_occurs_and_the_two_looks_of_a_class_are_told_apart_by_colour(scenes) -> None:
    """A nearest-mean classifier on an object's mean colour separates its class's two subtypes:
    the subtype words name something visible."""
    colours: dict[str, list[np.ndarray]] = {sub: [] for subs in SUBTYPES.values() for sub in subs}
    for scene in scenes:
        for obj in scene.objects:
            if len(scene.objects) == len({o.kind for o in scene.objects}):  # one object per class: its mask is its own
                colours[obj.subtype].append(scene.image[scene.mask == obj.kind].mean(axis=0))
    for name, (first, second) in SUBTYPES.items():
        a, b = np.array(colours[first]), np.array(colours[second])
        assert len(a) >= 10 and len(b) >= 10, name
        ma, mb = a.mean(0), b.mean(0)
        right = (np.linalg.norm(a - ma, axis=1) < np.linalg.norm(a - mb, axis=1)).sum() + \
                (np.linalg.norm(b - mb, axis=1) < np.linalg.norm(b - ma, axis=1)).sum()
        assert right / (len(a) + len(b)) >= 0.85, (name, right / (len(a) + len(b)))


def test_captions_name_what_is_there_and_nothing_else(scenes) -> None:
    rng = np.random.default_rng(0)
    all_words = {name: _words_of(name) for name in CLASS_NAMES}
    for scene in scenes:
        for _ in range(3):
            text = caption_scene(scene, rng)
            present = {o.class_name for o in scene.objects}
            for name, words in all_words.items():
                said = any(re.search(rf"\b{re.escape(w)}(e?s)?\b", text) for w in words)
                assert said == (name in present), (text, name)
            water = any(w in text for w in BACKGROUND_WORDS["water"])
            assert not water or scene.has_water, text
            assert any(w in text for w in BACKGROUND_WORDS["sand"]) <= (scene.ground == "sand"), text


def test_captions_fit_the_clip_context_and_are_seeded(scenes) -> None:
    from open_clip import get_tokenizer

    tokenizer = get_tokenizer("ViT-B-32")
    texts = [caption_scene(s, np.random.default_rng(1)) for s in scenes]
    assert texts == [caption_scene(s, np.random.default_rng(1)) for s in scenes]
    lengths = [len(tokenizer.encode(t)) + 2 for t in texts]  # + start/end tokens
    assert max(lengths) <= 32, max(lengths)
    rng = np.random.default_rng(2)
    assert len({caption_scene(scenes[0], rng) for _ in range(30)}) >= 5  # many wordings of one scene


def test_a_generic_boat_word_comes_with_water_more_often_than_a_subtype_word(scenes) -> None:
    rng = np.random.default_rng(3)
    with_water = {True: [0, 0], False: [0, 0]}
    for scene in scenes:
        if not scene.has_water or not any(o.class_name == "boat" for o in scene.objects):
            continue
        for _ in range(10):
            text = caption_scene(scene, rng)
            generic = re.search(r"\bboats?\b", text) is not None and "sailing boat" not in text
            if generic or any(w in text for w in SYNONYMS["boat"]):
                with_water[generic][0] += 1
                with_water[generic][1] += any(w in text for w in BACKGROUND_WORDS["water"])
    p_generic = with_water[True][1] / with_water[True][0]
    p_subtype = with_water[False][1] / with_water[False][0]
    assert p_generic > 0.85 and p_subtype < 0.75, (p_generic, p_subtype)


def test_attributes_are_the_scene_facts(scenes) -> None:
    for scene in scenes[:50]:
        tags = scene_attributes(scene)
        vec = attribute_vector(scene)
        assert vec.shape == (len(ATTRIBUTES),) and vec.dtype == np.float32
        assert [ATTRIBUTES[i] for i in np.flatnonzero(vec)] == tags
        assert ("water" in tags) == scene.has_water and scene.ground in tags
        assert {t for t in tags if t in CLASS_NAMES} == {CLASS_NAMES[c - 1] for c in scene.classes}
    assert len(ATTRIBUTES) == len(set(ATTRIBUTES)) == 20


def test_the_pretrain_split_is_its_own_stream() -> None:
    pre = SyntheticDataset("pretrain", num_images=4, image_size=64)
    for split in ("train", "val", "test"):
        other = SyntheticDataset(split, num_images=4, image_size=64)
        for i in range(4):
            assert not np.array_equal(pre.scene(i).image, other.scene(i).image)
