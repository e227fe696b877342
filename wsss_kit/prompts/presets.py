"""Prompt-learning presets: :class:`LearnableContextPrompt` with other keyword defaults.

A preset is a subclass whose constructor has the same keywords with the preset's defaults, so
``create("prompts", "coop", n_ctx=...)`` means "the coop preset, then this override", the
registry checks keywords before calling, and checkpoints and ``repr`` name the preset. A plugin
registers its own preset the same way, e.g. the WeakCLIP plugin::

    # wsss_weakclip/prompt.py
    from wsss_kit.prompts import context_prompt_preset

    WeakCLIPContext = context_prompt_preset(
        "WeakCLIPContext", n_ctx=8, position="after_start", template=None, init="normal",
        init_std=1.0, init_phrase=None, context_length=5,
        doc="WeakCLIP's learnable text context (official code): 8 vectors after [SOS], ...")

    # pyproject.toml
    [project.entry-points."wsss_kit.prompts"]
    weakclip_context = "wsss_weakclip.prompt:WeakCLIPContext"
"""

from __future__ import annotations

import inspect
import sys
from types import MappingProxyType
from typing import Any

from .learnable import LearnableContextPrompt

__all__ = ["PRESETS", "CoOpPrompt", "DeFoPrompt", "TargetOptimizationPrompt", "context_prompt_preset"]


def context_prompt_preset(name: str, /, *, doc: str | None = None, module: str | None = None,
                          base: type[LearnableContextPrompt] = LearnableContextPrompt,
                          **defaults: Any) -> type[LearnableContextPrompt]:
    """A subclass of ``base`` named ``name`` whose keyword defaults are ``defaults``.

    Args:
        name: the class name (assign the result to a module attribute of that name so that it
            pickles and its entry point ``module:name`` resolves).
        doc: its docstring (default: generated from ``defaults``).
        module: its ``__module__`` (default: the calling module).
        base: the class to specialise.
        **defaults: keyword defaults of ``base.__init__`` (``n_ctx``, ``position``, ``template``...).

    Raises:
        TypeError: a default names no keyword of ``base``.
    """
    sig = inspect.signature(base.__init__)
    unknown = sorted(set(defaults) - set(sig.parameters) - {"self"})
    if unknown:
        valid = ", ".join(p for p in sig.parameters if p != "self")
        raise TypeError(f"preset {name!r}: unknown keyword(s) {', '.join(unknown)}; valid: {valid}")
    preset = MappingProxyType(dict(defaults))

    def __init__(self: LearnableContextPrompt, **kwargs: Any) -> None:
        base.__init__(self, **{**preset, **kwargs})

    params = [p.replace(default=preset[p.name]) if p.name in preset else p for p in sig.parameters.values()]
    __init__.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", __name__)
    settings = ", ".join(f"{k}={v!r}" for k, v in preset.items())
    namespace = {
        "__init__": __init__,
        "__module__": module,
        "__qualname__": name,
        "__doc__": doc or f"{base.__name__} preset: {settings}.\n\n{base.__doc__ or ''}",
        "preset_defaults": preset,
    }
    __init__.__qualname__ = f"{name}.__init__"
    return type(name, (base,), namespace)


PRESETS: dict[str, dict[str, Any]] = {
    "coop": dict(n_ctx=None, position="before_class", template="{}.", init="phrase", init_phrase="a photo of a",
                 learn_context=True, learn_class=False),
    "defo": dict(n_ctx=None, position="before_class", template="{}", init="phrase", init_phrase="a photo of a",
                 learn_context=True, learn_class=True, class_init="name"),
    "target_opt": dict(template="a photo of {}.", learn_context=False, init_phrase=None, learn_class=True,
                       class_init="name"),
}
"""Keyword defaults of the core's registered learnable strategies (see docs/clip.md)."""

CoOpPrompt = context_prompt_preset(
    "CoOpPrompt", **PRESETS["coop"],
    doc="""CoOp: ``[SOS] V_1..V_N classname . [EOT]`` with N shared learnable context vectors.

    Registered as ``prompts/coop``. Defaults: the vectors start as the token embeddings of
    ``"a photo of a"`` (N = 4); ``init="normal", n_ctx=16, init_std=0.02`` gives CoOp's random
    start; ``class_specific=True`` gives CoOp's class-specific context. Every keyword of
    :class:`LearnableContextPrompt` can be overridden.
    """)

DeFoPrompt = context_prompt_preset(
    "DeFoPrompt", **PRESETS["defo"],
    doc="""DeFo-style: ``[SOS] V_1..V_N V_cls [EOT]``, learnable context and learnable class vectors.

    Registered as ``prompts/defo`` (POLE's Table 1 row "DeFo"). Defaults: context from
    ``"a photo of a"``, class vectors from the class names' token embeddings (each class gets as
    many vectors as its name has tokens); ``class_init="normal", n_class_tokens=1`` starts them
    at random. Every keyword of :class:`LearnableContextPrompt` can be overridden.
    """)

TargetOptimizationPrompt = context_prompt_preset(
    "TargetOptimizationPrompt", **PRESETS["target_opt"],
    doc="""Target optimisation: ``"a photo of [V_cls]."``, fixed template, learnable class vectors.

    Registered as ``prompts/target_opt`` (POLE's Table 1). The class vectors start as the class
    names' token embeddings (``class_init="normal"`` for random). Every keyword of
    :class:`LearnableContextPrompt` can be overridden.
    """)
