"""Presets of refiners/psa_rw and refiners/irn_rw: values, overrides, errors."""

from __future__ import annotations

import inspect

import pytest
import torch

import wsss_kit
from wsss_affinity.affinity import PSARefiner
from wsss_affinity.irn import IRNRefiner
from wsss_affinity.refiner_presets import IRN_PRESETS, PRESET, PSA_PRESETS, resolve_preset

TINY_PSA = dict(stem_width=4, widths=((4, 4), (4, 8), (8, 8), (8, 16)), depths=(1, 1, 1, 1),
                bottleneck_widths=(8, 16), dropouts=(0.0, 0.0), embed_widths=(4, 4, 8), embed_dim=8)
TINY_IRN = dict(backbone="test_resnet", width=8, displacement=False)


def _psa(**kw):
    return PSARefiner(**TINY_PSA, **kw)


def _irn(**kw):
    return IRNRefiner(**TINY_IRN, **kw)


def test_psa_official_is_mctformer_and_psa_is_psas_code():
    ref = _psa()
    assert (ref.alpha_low, ref.alpha_high, ref.bg_threshold, ref.alpha, ref.beta, ref.log_t, ref.cover_border) == \
        (1.0, 12.0, 0.39, None, 8.0, 6, True)
    psa = _psa(preset="psa")
    assert (psa.alpha_low, psa.alpha_high, psa.bg_threshold, psa.alpha, psa.beta, psa.log_t, psa.cover_border) == \
        (4.0, 32.0, None, 16.0, 8.0, 8, False)
    assert dict(PSA_PRESETS["paper"]) == dict(PSA_PRESETS["official"])


def test_irn_presets_and_clims_settings():
    ref = _irn()
    assert (ref.conf_fg_threshold, ref.conf_bg_threshold, ref.bg_threshold, ref.beta, ref.exp_times,
            ref.radius, ref.train_radius) == (0.30, 0.05, 0.25, 10.0, 8, 5, 10)
    clims = _irn(preset="clims_voc")
    assert (clims.conf_fg_threshold, clims.conf_bg_threshold, clims.bg_threshold) == (0.30, 0.10, 0.20)
    coco = _irn(preset="clims_coco")
    assert (coco.conf_fg_threshold, coco.conf_bg_threshold, coco.bg_threshold) == (0.35, 0.10, 0.25)


def test_explicit_keywords_override_the_preset_and_dicts_override_official():
    assert _irn(preset="clims_voc", bg_threshold=0.22).bg_threshold == 0.22
    assert _psa(preset="psa", log_t=5).log_t == 5
    assert _psa(preset={"beta": 4.0}).beta == 4.0 and _psa(preset={"beta": 4.0}).log_t == 6
    # An explicit None is a value (PSA's background from alpha), not "take the preset".
    assert _psa(bg_threshold=None, alpha=16.0).bg_threshold is None


def test_preset_errors_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown irn_rw preset 'clims' \(did you mean 'clims_voc'\?\); "
                                         r"available: official, paper, clims_voc, clims_coco"):
        _irn(preset="clims")
    with pytest.raises(ValueError, match="psa_rw preset dict: gamma not preset keywords"):
        _psa(preset={"gamma": 1})
    with pytest.raises(ValueError, match="psa_rw needs a background for the walk"):
        _psa(bg_threshold=None)
    with pytest.raises(ValueError, match="preset must be a name"):
        resolve_preset(IRN_PRESETS, 3, "irn_rw", {})


def test_presets_are_read_only_and_signatures_show_them():
    with pytest.raises(TypeError):
        IRN_PRESETS["official"]["beta"] = 1.0
    sig = inspect.signature(IRNRefiner)
    assert sig.parameters["beta"].default is PRESET and repr(PRESET) == "<preset>"
    assert sig.parameters["preset"].default == "official"


def test_create_with_a_preset_through_the_registry():
    torch.manual_seed(0)
    ref = wsss_kit.create("refiners", "irn_rw", preset="clims_voc", **TINY_IRN)
    assert isinstance(ref, IRNRefiner) and ref.bg_threshold == 0.20
