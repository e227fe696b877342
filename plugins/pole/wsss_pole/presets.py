"""CLIMS presets (the official settings per dataset, github CVI-SZU/CLIMS) and POLE's Table 4, as data.

=================  =====================================  ======================================
keyword            ``voc``                                ``coco``
=================  =====================================  ======================================
loss weights       OTM 10, BTM 24, CBS 1, REG 0.2         OTM 2, BTM 14, CBS 1.25, REG 0.2
cbs_threshold      0.26                                   0.285
background         the 10 VOC words                       the 88 COCO words
class names        wsss_kit's VOC names                   wsss_kit's COCO names
name overrides     person→player, diningtable→dining      person→player
                   table, pottedplant→potted plant,
                   tvmonitor→tv monitor
=================  =====================================  ======================================

The weights and thresholds are those of the official README commands (VOC ``--hyper 10,24,1,0.2``;
COCO ``--hyper 2,14,1.25,0.2 --cbs_loss_thresh 0.285``). The class prompts are ``"a photo of {}."``
with the official code's class words (``clip_utils.py``), which differ from wsss_kit's dataset
names only where the overrides say.

POLE's Table 4 rows as ``cam.model`` nodes: :data:`POLE_TABLE4`, :func:`pole_table4_node`.
"""

from __future__ import annotations

import copy
from typing import Any

from wsss_kit.data import COCO_CLASSES, VOC_CLASSES

__all__ = ["CLIMS_PRESETS", "CLIMS_TEMPLATE", "POLE_ONLY_KEYS", "POLE_TABLE4", "clims_loss_preset", "clims_preset",
           "pole_table4_node"]

CLIMS_TEMPLATE = "a photo of {}."
"""CLIMS's class prompt template."""

CLIMS_PRESETS: dict[str, dict[str, Any]] = {
    "voc": {
        "otm_weight": 10.0, "btm_weight": 24.0, "cbs_weight": 1.0, "reg_weight": 0.2,
        "cbs_threshold": 0.26,
        "background": "voc",
        "class_names": tuple(VOC_CLASSES),
        "class_name_overrides": {"person": "player", "diningtable": "dining table",
                                 "pottedplant": "potted plant", "tvmonitor": "tv monitor"},
    },
    "coco": {
        "otm_weight": 2.0, "btm_weight": 14.0, "cbs_weight": 1.25, "reg_weight": 0.2,
        "cbs_threshold": 0.285,
        "background": "coco",
        "class_names": tuple(COCO_CLASSES),
        "class_name_overrides": {"person": "player"},
    },
}
"""Official CLIMS settings per dataset; keywords of :class:`wsss_pole.CLIMS` (the first five also
of :class:`wsss_pole.CLIMSLoss`)."""

LOSS_KEYS = ("otm_weight", "btm_weight", "cbs_weight", "reg_weight", "cbs_threshold")


def clims_preset(name: str) -> dict[str, Any]:
    """A copy of the preset ``name`` (``"voc"`` or ``"coco"``).

    Raises:
        ValueError: unknown name; the message lists the presets.
    """
    if name not in CLIMS_PRESETS:
        raise ValueError(f"unknown CLIMS preset {name!r}; available: {', '.join(CLIMS_PRESETS)}")
    return copy.deepcopy(CLIMS_PRESETS[name])


def clims_loss_preset(name: str) -> dict[str, float]:
    """The loss weights and CBS threshold of the preset ``name``."""
    preset = clims_preset(name)
    return {k: float(preset[k]) for k in LOSS_KEYS}


POLE_TABLE4: dict[str, dict[str, Any]] = {
    "A": {"node": {"type": "cams/clims"}, "miou": 70.5, "what": "image label as [CLS], i.e. CLIMS"},
    "B": {"node": {"type": "cams/pole", "adapter": "none"}, "miou": 73.6, "what": "selected [CLS*], no adapter"},
    "C": {"node": {"type": "cams/pole", "adapter": "fixed"}, "miou": 73.8,
          "what": "[CLS*] + adapters with the fixed ratio 0.2"},
    "D": {"node": {"type": "cams/pole", "adapter": "vector"}, "miou": 74.2,
          "what": "[CLS*] + adapters with learnable ratio vectors (POLE)"},
}
"""POLE's Table 4 (VOC 2012 train, mIoU % of the pseudo masks after RW) as ``cam.model`` nodes.
Rows B–D also need ``selection_cache`` (and the same CLIMS keywords as row A)."""

POLE_ONLY_KEYS = ("synonyms", "selection_cache", "adapter", "adapter_ratio", "adapter_lr_mult", "adapter_final_relu")
"""Keywords of ``cams/pole`` that ``cams/clims`` does not have."""


def pole_table4_node(row: str, **kwargs: Any) -> dict[str, Any]:
    """The ``cam.model`` node of Table 4 row ``row`` (``"A"`` … ``"D"``) with ``kwargs`` added, e.g.
    ``pole_table4_node("D", selection_cache="run/pole_selection_train.json", init_checkpoint=...)``.
    For row A the POLE-only keywords (:data:`POLE_ONLY_KEYS`) are dropped, so that one set of
    keywords gives all four rows."""
    key = str(row).upper()
    if key not in POLE_TABLE4:
        raise ValueError(f"unknown POLE Table 4 row {row!r}; available: {', '.join(POLE_TABLE4)}")
    node = copy.deepcopy(POLE_TABLE4[key]["node"])
    if key == "A":
        kwargs = {k: v for k, v in kwargs.items() if k not in POLE_ONLY_KEYS}
    node.update(kwargs)
    return node
