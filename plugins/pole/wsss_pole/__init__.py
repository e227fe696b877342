"""wsss-kit-pole: CLIMS and POLE for wsss_kit.

Plugins (entry points): ``cams/clims`` → :class:`CLIMS` (the CLIMS CAM network), ``cams/pole`` →
:class:`POLE` (CLIMS with selected class words and adapters), ``losses/clims`` → :class:`CLIMSLoss`
(functional :func:`clims_loss`), ``prompts/pole_synonyms`` → :class:`PoleSynonyms` (POLE's synonym selection,
:mod:`wsss_pole.synonyms`). Console script ``wsss-pole-select`` (:mod:`wsss_pole.cli`) builds the
selection cache. The background prompt lists ship as package data (:func:`background_words`).
Converter ``pole_official_adapters`` (:func:`convert_pole_official_adapters`): POLE's official
``Av``/``At`` adapters → :class:`POLE`'s; :meth:`POLE.load_weights` reads official checkpoints.
"""

from .background import BACKGROUND_SETS, background_prompts, background_words
from .clims import CLIMS
from .convert import convert_pole_official_adapters
from .losses import CLIMSLoss, clims_loss, clims_masked_inputs, clims_matching_terms
from .pole import POLE
from .presets import CLIMS_PRESETS, POLE_TABLE4
from .synonyms import PoleSynonyms

__all__ = ["BACKGROUND_SETS", "CLIMS_PRESETS", "POLE_TABLE4", "CLIMS", "CLIMSLoss", "POLE", "PoleSynonyms",
           "background_prompts", "background_words", "clims_loss", "clims_masked_inputs", "clims_matching_terms",
           "convert_pole_official_adapters"]
