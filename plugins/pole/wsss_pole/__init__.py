"""wsss-kit-pole: CLIMS and POLE for wsss_kit.

Plugins (entry points): ``cams/clims`` → :class:`CLIMS` (the CLIMS CAM network), ``losses/clims`` →
:class:`CLIMSLoss` (functional :func:`clims_loss`), ``prompts/pole_synonyms`` (POLE's synonym
selection, :mod:`wsss_pole.synonyms`). The background prompt lists ship as package data
(:func:`background_words`).
"""

from .background import BACKGROUND_SETS, background_prompts, background_words
from .clims import CLIMS
from .losses import CLIMSLoss, clims_loss, clims_masked_inputs, clims_matching_terms
from .presets import CLIMS_PRESETS

__all__ = ["BACKGROUND_SETS", "CLIMS", "CLIMSLoss", "CLIMS_PRESETS", "background_prompts", "background_words",
           "clims_loss", "clims_masked_inputs", "clims_matching_terms"]
