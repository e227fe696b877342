"""The generic prompt strategies (plugin kind ``prompts``): fixed templates and learnable vectors.

============  =======================================  ==========================================
name          class                                    text sequence
============  =======================================  ==========================================
template      :class:`TemplatePrompt`                   ``"a photo of {}."`` (several averaged)
coop          :class:`CoOpPrompt`                       ``[SOS] V_1..V_N classname . [EOT]``
defo          :class:`DeFoPrompt`                       ``[SOS] V_1..V_N V_cls [EOT]``
target_opt    :class:`TargetOptimizationPrompt`         ``[SOS] a photo of V_cls . [EOT]``
============  =======================================  ==========================================

Every strategy is called as ``strategy(class_names, clip=clip)`` with a
:class:`wsss_kit.clip.CLIPModel` and returns text features ``(K, E)``. Plugins add presets of
:class:`LearnableContextPrompt` with :func:`context_prompt_preset`. Importing this package
does not import open_clip.
"""

from .learnable import CONTEXT_INITS, LearnableContextPrompt
from .presets import PRESETS, CoOpPrompt, DeFoPrompt, TargetOptimizationPrompt, context_prompt_preset
from .template import TemplatePrompt, apply_overrides

__all__ = [
    "CONTEXT_INITS",
    "PRESETS",
    "CoOpPrompt",
    "DeFoPrompt",
    "LearnableContextPrompt",
    "TargetOptimizationPrompt",
    "TemplatePrompt",
    "apply_overrides",
    "context_prompt_preset",
]
