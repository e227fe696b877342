"""One shape check for tensors at a public boundary, with one message format.

``check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")`` raises
``ValueError: images must be (B, 3, H, W) RGB in [0, 1]; got shape (2, 4, 8, 8)``. A pattern is
dimension tokens separated by spaces:

* a number must match exactly (``3``);
* a name (``B``, ``C``, ``H``...) matches any size, the same size wherever it appears again, and
  the size given for it in ``sizes`` (``sizes={"B": 2}``: the batch size of another argument);
* ``*`` matches any size;
* ``|`` separates alternatives: ``"B H W | B 1 H W"``.

It returns the sizes the names took, so a caller can check the next argument against them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["check_shape"]


def _parse(pattern: str) -> list[list[str]]:
    alternatives = [alt.split() for alt in pattern.split("|")]
    if not pattern.strip() or any(not alt for alt in alternatives):
        raise ValueError(f"shape pattern {pattern!r} is empty or has an empty alternative")
    return alternatives


def _match(shape: tuple[int, ...], tokens: list[str], sizes: Mapping[str, int]) -> dict[str, int] | None:
    if len(shape) != len(tokens):
        return None
    bound = dict(sizes)
    for size, token in zip(shape, tokens):
        if token == "*":
            continue
        if token.lstrip("-").isdigit():
            if size != int(token):
                return None
        elif bound.setdefault(token, size) != size:
            return None
    return bound


def _describe(tokens: list[str]) -> str:
    return f"({', '.join(tokens)}{',' if len(tokens) == 1 else ''})"


def check_shape(
    tensor: object,
    pattern: str,
    name: str,
    *,
    note: str = "",
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Check that ``tensor`` is a tensor whose shape matches ``pattern`` (see the module docstring).

    Args:
        tensor: the argument to check.
        pattern: e.g. ``"B C H W"``, ``"B 3 H W"``, ``"B H W | B 1 H W"``.
        name: the argument's name, first word of the message.
        note: words after the expected shape (``"RGB in [0, 1]"``, ``"at the image size"``).
        sizes: sizes some names must take (``{"B": 2, "C": 20}``); they are written in the message.

    Returns:
        ``{name: size}`` for every name of the alternative that matched (and those of ``sizes``).

    Raises:
        TypeError: ``tensor`` is not a ``torch.Tensor``.
        ValueError: no alternative matches: ``"<name> must be (B, C, H, W) [with B = 2] [note];
            got shape (...)"``.
    """
    alternatives = _parse(pattern)
    expected = " or ".join(_describe(tokens) for tokens in alternatives)
    given = dict(sizes or {})
    with_sizes = (" with " + ", ".join(f"{k} = {v}" for k, v in given.items())) if given else ""
    tail = f"{with_sizes}{' ' + note if note else ''}"
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {expected}{tail}; got {type(tensor).__name__}")
    shape = tuple(int(s) for s in tensor.shape)
    for tokens in alternatives:
        bound = _match(shape, tokens, given)
        if bound is not None:
            return bound
    raise ValueError(f"{name} must be {expected}{tail}; got shape {shape}")
