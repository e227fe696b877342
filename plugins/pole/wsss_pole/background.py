"""CLIMS's background prompt lists (co-occurring background suppression), shipped as package data.

The lists live in ``wsss_pole/data/background_<name>.txt``: one class word per line, ``#`` starts a
comment. The official code puts every word into ``"a photo of {}."``; :func:`background_prompts`
does the same.

==========  =====  ===================================================================
name        words  source
==========  =====  ===================================================================
``voc``     10     official CLIMS code (``clip_utils.py``), see docs/methods.md
``coco``    88     official CLIMS code (``clip_utils.py``); not in the CLIMS paper
==========  =====  ===================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

__all__ = ["BACKGROUND_SETS", "BACKGROUND_TEMPLATE", "background_prompts", "background_words"]

BACKGROUND_SETS = ("voc", "coco")
"""Names of the shipped background word lists."""

BACKGROUND_TEMPLATE = "a photo of {}."
"""The template the official code puts every background word into."""


def background_words(name: str) -> list[str]:
    """The shipped background words of ``name`` (``"voc"`` or ``"coco"``), in the official order.

    Raises:
        ValueError: an unknown name; the message lists the shipped ones.
    """
    if name not in BACKGROUND_SETS:
        raise ValueError(f"unknown background prompt list {name!r}; shipped lists: {', '.join(BACKGROUND_SETS)} "
                         f"(or pass your own list of words)")
    text = resources.files("wsss_pole").joinpath("data").joinpath(f"background_{name}.txt").read_text(encoding="utf-8")
    words = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [w for w in words if w]


def background_prompts(background: str | Sequence[str], template: str | None = BACKGROUND_TEMPLATE) -> list[str]:
    """Background prompt strings: a shipped list's name or your own words, each put into ``template``.

    Args:
        background: ``"voc"``, ``"coco"``, or a sequence of words (may be empty: no suppression).
        template: one ``{}`` for the word; ``None`` uses the words as complete prompts.
    """
    if isinstance(background, str):
        words = background_words(background)
    else:
        words = [str(w) for w in background]
        if any(not w.strip() for w in words):
            raise ValueError(f"background words must be non-empty strings; got {list(background)!r}")
    if template is None:
        return words
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"background template must contain exactly one '{{}}' for the word; got {template!r}")
    return [template.format(w) for w in words]
