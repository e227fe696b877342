"""``prompts/weakclip_context``: WeakCLIP's learnable text context, a preset of the core's learnable prompt.

The official code (github hustvl/WeakCLIP, ``CLIPTextContextEncoder``) builds every class prompt as::

    [SOS] V_1 ... V_N  classname  [EOT]        N = 8 shared vectors of the text width (512 for ViT-B)

* the class names are the raw dataset names (``"background"`` included), with no template,
  tokenised to a context length of 5, so the sequence is 5 + N = 13 positions; the text
  position embedding and the causal mask are cut to that length and the ``[EOT]`` index moves
  by N;
* the vectors start as a truncated normal with std 1 (cut at ±2, PyTorch's default bounds);
* they sit right after ``[SOS]`` (``position="after_start"``). The paper's Eq. (5),
  ``t_k = [le_1..le_N, CLASS_k]``, puts them in front of the class tokens, which with bare
  class names is the same sequence.

Every keyword of :class:`wsss_kit.prompts.LearnableContextPrompt` can be overridden, e.g.
``WeakCLIPContext(n_ctx=16)`` (the paper's Table 5) or ``position="before_class"``.
"""

from __future__ import annotations

from typing import Any

from wsss_kit.prompts import context_prompt_preset

__all__ = ["WEAKCLIP_CONTEXT_DEFAULTS", "WeakCLIPContext"]

WEAKCLIP_CONTEXT_DEFAULTS: dict[str, Any] = dict(n_ctx=8, position="after_start", template=None, init="normal",
                                                 init_std=1.0, init_bound=2.0, init_phrase=None, context_length=5)
"""The official settings of WeakCLIP's learnable context (keywords of ``LearnableContextPrompt``)."""

WeakCLIPContext = context_prompt_preset(
    "WeakCLIPContext", **WEAKCLIP_CONTEXT_DEFAULTS,
    doc="""WeakCLIP's learnable text context: ``[SOS] V_1..V_N classname [EOT]``, N = 8 by default.

    Registered as ``prompts/weakclip_context``. Defaults follow the official code: the raw class
    names (``"background"`` included) with no template, tokenised to 5 positions, N = 8 shared
    context vectors inserted right after ``[SOS]`` (5 + 8 = 13 positions), initialised from a
    truncated normal with std 1 (cut at ±2). ``n_ctx`` and ``position`` (and every other keyword of
    :class:`wsss_kit.prompts.LearnableContextPrompt`) can be overridden.

    ``forward(class_names, clip=clip)`` → text features ``(K, E)``, projected, not normalised.
    """)
