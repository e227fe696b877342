"""benchmarks/mctformer_speed.py: the official-like variant computes what ours computes (CAMs, losses,
updates), and the measure functions return their documented fields. Tiny sizes; no timing asserted."""

from __future__ import annotations

import pytest
import torch

from benchmarks import mctformer_speed as ms


@pytest.mark.parametrize("version", [1, 2])
def test_official_like_cams_equal_ours(version):
    res = ms.measure_mctformer_cams(version, size=48, scales=(1.0, 0.75), rounds=1, memory=False)
    assert set(res["seconds"]) == {"ours", "official_like"}
    assert res["seconds"]["official_like"]["ratio_to_ours"] > 0
    assert len(res["seconds"]["ours"]["rounds_s"]) == 1
    assert res["max_cam_difference"]["official_like"] < 1e-3
    assert res["config"]["version"] == version and res["machine"]["load_average_before"]


def test_official_like_step_equals_ours():
    res = ms.measure_mctformer_step(2, batch=2, size=32, rounds=1, memory=False)
    assert res["max_loss_difference"]["official_like"] < 1e-5
    # the first AdamW step moves every weight by about lr·sign(grad); float noise flips only tiny gradients
    assert res["max_update_difference"]["official_like"] < 0.25 * ms.LR
    assert res["loss"]["ours"] > 0


def test_official_like_forward_equals_ours_in_float64():
    ours = ms.build_ours(2, 4, drop_path_rate=0.0).double().eval()
    like = ms.OfficialLike(ours).eval()
    images = torch.rand(2, 3, 48, 64, dtype=torch.float64)
    with torch.no_grad():
        logits, patch_logits = like((images - ms.MEAN.double()) / ms.STD.double())
        out = ours(images)
    torch.testing.assert_close(logits, out["logits"])
    torch.testing.assert_close(patch_logits, out["patch_logits"])


def test_official_checkout_must_hold_its_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="vision_transformer.py"):
        ms.load_official(tmp_path)
