"""Training targets of psa_rw / irn_rw from CAMs: two-CRF confident regions (PSA) and IRN's relation labels."""

from __future__ import annotations

import pytest
import torch

from wsss_affinity.affinity import PSARefiner
from wsss_affinity.irn import IRNRefiner
from wsss_affinity.relation_labels import (
    confident_regions,
    irn_confident_regions,
    irn_relation_labels,
    label_crf,
    normalise_cams,
    psa_relation_labels,
)

pytest.importorskip("pydensecrf.densecrf")


def _three_regions(h: int = 24, w: int = 48):
    """Black | grey | white thirds; class 2's CAM is 0 | 0.2 | 1 on them; class 3 (absent) is 0.8 everywhere."""
    image = torch.zeros(3, h, w)
    image[:, :, w // 3: 2 * w // 3] = 0.5
    image[:, :, 2 * w // 3:] = 1.0
    cams = torch.zeros(3, h, w)
    cams[1, :, w // 3: 2 * w // 3] = 0.2
    cams[1, :, 2 * w // 3:] = 1.0
    cams[2] = 0.8
    return image, cams, torch.tensor([0.0, 1.0, 0.0])


@pytest.mark.parametrize("make", [psa_relation_labels, irn_relation_labels])
def test_flat_regions_give_known_confident_maps(make):
    image, cams, labels = _three_regions()
    target = make(image, cams, labels)
    assert target.dtype == torch.int64 and target.shape == (24, 48)
    assert (target[:, :16] == 0).all()      # no CAM: background in both maps
    assert (target[:, 16:32] == 255).all()  # CAM 0.2: background only in the stricter map
    assert (target[:, 32:] == 2).all()      # CAM 1: class 2 (index 1 + 1)
    assert not (target == 3).any()          # absent class never appears


def test_psa_alphas_move_the_band():
    image, cams, labels = _three_regions()
    # with alpha_high 1 the 0.2-CAM third is background in both maps
    target = psa_relation_labels(image, cams, labels, alpha_low=1.0, alpha_high=1.0)
    assert (target[:, 16:32] == 0).all() and (target[:, 32:] == 2).all()


def test_irn_thresholds_move_the_band():
    image, cams, labels = _three_regions()
    target = irn_relation_labels(image, cams, labels, conf_fg_threshold=0.1, conf_bg_threshold=0.05)
    assert (target[:, 16:] == 2).all() and (target[:, :16] == 0).all()


def test_precedence_differs_between_psa_and_irn():
    # pixel 0: foreground in the looser map, background in the stricter one; 1: agreed fg; 2: bg; 3: band
    looser = torch.tensor([[4, 4, 0, 0]])
    stricter = torch.tensor([[0, 4, 0, 4]])
    # PSA: la = low-α (more background), ha = high-α; ha background wins over la foreground
    assert confident_regions(looser, stricter).tolist() == [[0, 4, 0, 255]]
    # IRN: fg map (conf_fg), bg map (conf_bg); a foreground label in the fg map wins
    assert irn_confident_regions(looser, stricter).tolist() == [[4, 4, 0, 255]]


def test_label_crf_keeps_a_clean_label_map_and_handles_one_label():
    from wsss_kit.crf import images_to_uint8

    image, _, _ = _three_regions()
    rgb = images_to_uint8(image[None])[0]
    labels = torch.zeros(24, 48, dtype=torch.long)
    labels[:, 32:] = 1
    assert torch.equal(label_crf(rgb, labels, 2), labels)
    assert torch.equal(label_crf(rgb, torch.zeros(24, 48, dtype=torch.long), 1), torch.zeros(24, 48, dtype=torch.long))
    with pytest.raises(ValueError, match="0..1"):
        label_crf(rgb, labels + 1, 2)


def test_no_present_class_is_all_background_and_bad_inputs_raise():
    image, cams, _ = _three_regions()
    for make in (psa_relation_labels, irn_relation_labels):
        assert (make(image, cams, torch.zeros(3)) == 0).all()
        with pytest.raises(ValueError, match="image size"):
            make(image, cams[:, :10], torch.zeros(3))
        with pytest.raises(ValueError, match=r"labels must be \(3,\)"):
            make(image, cams, torch.zeros(2))
        with pytest.raises(ValueError, match="float"):
            make((image * 255).to(torch.uint8), cams, torch.zeros(3))


def test_normalise_cams_per_class_and_absent_zero():
    cams = torch.stack([torch.full((2, 2), 4.0), torch.full((2, 2), 0.5), torch.full((2, 2), -1.0)])
    out = normalise_cams(cams, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(out[0], torch.ones(2, 2), atol=1e-5) and (out[1] == 0).all() and (out[2] == 0).all()


def test_refiners_expose_the_protocol():
    image, cams, labels = _three_regions()
    irn = IRNRefiner(backbone="test_resnet", width=8, displacement=False)
    assert torch.equal(irn.training_targets(image, cams, labels), irn_relation_labels(image, cams, labels))
    clims = IRNRefiner(backbone="test_resnet", width=8, displacement=False, conf_fg_threshold=0.1)
    assert (clims.training_targets(image, cams, labels)[:, 16:] == 2).all()
    psa = PSARefiner(stem_width=4, widths=((4, 4), (4, 8), (8, 8), (8, 16)), depths=(1, 1, 1, 1),
                     bottleneck_widths=(8, 16), dropouts=(0.0, 0.0), embed_widths=(4, 4, 8), embed_dim=8,
                     alpha_low=1.0, alpha_high=1.0)
    assert (psa.training_targets(image, cams, labels)[:, 16:32] == 0).all()
