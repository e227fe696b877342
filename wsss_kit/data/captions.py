"""Language for the synthetic world: captions of what a scene shows, and its attribute tags.

The embedded CLIP (``wsss-synthetic-clip``) learns from these captions, so they are written to
carry the two statistics of web text that the seed papers build on:

- **Subtype words mean something visible.** Every class has two looks (:data:`~.synthetic_scene.SUBTYPES`)
  with their own words (``"sailboat"`` vs ``"rowboat"``); a caption names an object by its
  subtype word about half the time and by a generic class word otherwise. POLE's synonym
  selection assumes such synonyms (its Table S1); here they exist by construction.
- **Generic class words co-occur with their typical background.** A boat called "boat" is
  almost always said to be on the water, one called by its subtype word less often, so the plain
  word "boat" picks up "water" in the text encoder, as in web captions (the false activation
  CLIMS and POLE fight).

Captions are drawn at random from the scene's facts with a caller's generator, so every
epoch of pretraining can see different wordings of the same scene. The tags of
:func:`scene_attributes` are the facts without the wording, for multi-label pretext tasks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .synthetic_scene import CLASS_NAMES, SUBTYPES, Scene, SceneObject

__all__ = [
    "ATTRIBUTES",
    "BACKGROUND_WORDS",
    "CLASS_WORDS",
    "CLEAR_COVER",
    "CLOUDY_COVER",
    "SUBTYPE_WORDS",
    "SYNONYMS",
    "attribute_vector",
    "caption_scene",
    "scene_attributes",
]

CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "ball": ("ball",),
    "box": ("box",),
    "kite": ("kite",),
    "boat": ("boat",),
    "tree": ("tree",),
}
"""Generic words for each class (the class name first)."""

SUBTYPE_WORDS: dict[str, tuple[str, ...]] = {
    "beach ball": ("beach ball",),
    "football": ("football", "soccer ball"),
    "crate": ("crate", "wooden crate"),
    "cardboard box": ("cardboard box", "carton"),
    "diamond kite": ("diamond kite",),
    "delta kite": ("delta kite",),
    "sailboat": ("sailboat", "sailing boat"),
    "rowboat": ("rowboat", "dinghy"),
    "oak": ("oak", "oak tree"),
    "pine": ("pine", "pine tree"),
}
"""Words for each subtype (the subtype's name first)."""

SYNONYMS: dict[str, list[str]] = {
    name: [word for sub in SUBTYPES[name] for word in SUBTYPE_WORDS[sub]] for name in CLASS_NAMES
}
"""Each class's synonyms in this world (its subtypes' words): the table POLE selects from."""

BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("the water", "the lake", "the sea"),
    "grass": ("the grass", "a meadow", "a green field"),
    "sand": ("the sand", "the dunes", "sandy ground"),
    "cloudy": ("a cloudy sky", "white clouds"),
    "clear": ("a clear blue sky", "a blue sky"),
    "rocks": ("grey rocks", "a few stones"),
}
"""Phrases for the background facts."""

CLOUDY_COVER = 0.1
"""A sky with at least this cloud cover (:attr:`Scene.cloud_cover`) is "cloudy" (about the top quarter)."""
CLEAR_COVER = 0.03
"""A sky with at most this cloud cover is "clear"; in between, captions say nothing of the sky."""

ATTRIBUTES: tuple[str, ...] = (
    *CLASS_NAMES,
    *(sub for name in CLASS_NAMES for sub in SUBTYPES[name]),
    "water", "grass", "sand", "cloudy", "rocks",
)
"""Tag vocabulary of :func:`scene_attributes`: the 5 classes, their 10 subtypes, 5 background facts."""

_P_SUBTYPE_WORD = 0.5
_P_WATER_GENERIC_BOAT = 0.95
_P_WATER_OTHERWISE = 0.6
_P_COLOUR = 0.35
_P_SKY = 0.5
_P_ROCKS = 0.3
_COUNT_WORDS = ("", "a", "two", "three")


def scene_attributes(scene: Scene) -> list[str]:
    """The scene's tags from :data:`ATTRIBUTES` (classes, subtypes, background), in that order."""
    present = {o.class_name for o in scene.objects} | {o.subtype for o in scene.objects}
    present.add(scene.ground)
    if scene.has_water:
        present.add("water")
    if scene.cloud_cover >= CLOUDY_COVER:
        present.add("cloudy")
    if scene.rocks:
        present.add("rocks")
    return [tag for tag in ATTRIBUTES if tag in present]


def attribute_vector(scene: Scene) -> np.ndarray:
    """``float32 (len(ATTRIBUTES),)`` multi-hot of :func:`scene_attributes`."""
    tags = set(scene_attributes(scene))
    return np.array([tag in tags for tag in ATTRIBUTES], dtype=np.float32)


def _plural(word: str) -> str:
    if word.endswith(("x", "s")):
        return word + "es"
    return word + "s"


def _object_phrase(rng: np.random.Generator, objects: Sequence[SceneObject]) -> tuple[str, bool]:
    """A noun phrase for same-subtype objects, and whether it used a generic class word."""
    first = objects[0]
    generic = rng.random() >= _P_SUBTYPE_WORD
    words = CLASS_WORDS[first.class_name] if generic else SUBTYPE_WORDS[first.subtype]
    word = words[int(rng.integers(len(words)))]
    if len(objects) > 1:
        return f"{_COUNT_WORDS[min(len(objects), 3)]} {_plural(word)}", generic
    if rng.random() < _P_COLOUR:
        word = f"{first.colour} {word}"
    return ("an " if word[0] in "aeiou" else "a ") + word, generic


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption_scene(scene: Scene, rng: np.random.Generator) -> str:
    """One random caption of ``scene``, e.g. ``"a red sailboat and a kite on the sea under a cloudy sky."``.

    Objects appear in random order, grouped by subtype ("two footballs"), each named by a subtype
    word or a generic class word (see the module docstring for the probabilities' purpose); the
    place (water, grass, sand), the sky and rocks are mentioned at random, water almost always
    when a generic "boat" is named.
    """
    groups: dict[str, list[SceneObject]] = {}
    for obj in scene.objects:
        groups.setdefault(obj.subtype, []).append(obj)
    order = [groups[key] for key in sorted(groups)]
    rng.shuffle(order)
    phrases, generic_boat = [], False
    for group in order:
        phrase, generic = _object_phrase(rng, group)
        phrases.append(phrase)
        generic_boat |= generic and group[0].class_name == "boat"
    caption = _join(phrases)

    def pick(key: str) -> str:
        words = BACKGROUND_WORDS[key]
        return words[int(rng.integers(len(words)))]

    water_p = _P_WATER_GENERIC_BOAT if generic_boat else _P_WATER_OTHERWISE
    if scene.has_water and rng.random() < water_p:
        caption += f" {'on' if any(o.class_name == 'boat' for o in scene.objects) else 'by'} {pick('water')}"
    elif rng.random() < 0.6:
        caption += f" on {pick(scene.ground)}"
    if scene.rocks and rng.random() < _P_ROCKS:
        caption += f" with {pick('rocks')}"
    if rng.random() < _P_SKY:
        if scene.cloud_cover >= CLOUDY_COVER:
            caption += f" under {pick('cloudy')}"
        elif scene.cloud_cover <= CLEAR_COVER:
            caption += f" under {pick('clear')}"
    template = int(rng.integers(3))
    if template == 0:
        return f"a photo of {caption}."
    if template == 1:
        return f"{caption}."
    return f"a picture showing {caption}."
