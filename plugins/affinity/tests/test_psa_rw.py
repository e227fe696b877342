"""refiners/psa_rw: PSA's affinity labels and loss, a tiny AffinityNet, training step and refine."""

from __future__ import annotations

import math

import pytest
import torch
from deeplab_official_layouts import TINY_WR38, psa_aff_reference, psa_aff_state, resnet38_state

from wsss_affinity.affinity import AffinityNet, PSARefiner, affinity_labels, affinity_loss
from wsss_affinity.convert_affinity import convert_psa_affinity_net
from wsss_affinity.random_walk import path_indices
from wsss_affinity.relation_labels import confident_regions
from wsss_kit.weights import get_converter

TINY = dict(stem_width=4, widths=((4, 4), (4, 8), (8, 8), (8, 16)), depths=(1, 1, 1, 1),
            bottleneck_widths=(8, 16), dropouts=(0.0, 0.0), embed_widths=(4, 4, 8), embed_dim=8)


def test_confident_regions():
    low = torch.tensor([[[0, 1, 2, 0]]])
    high = torch.tensor([[[0, 1, 2, 2]]])
    assert confident_regions(low, high).tolist() == [[[0, 1, 2, 255]]]


def test_affinity_labels_hand_computed():
    mask = torch.tensor([[[0, 0, 1, 2, 255]]])  # 1×5, radius 2: pairs (i, i+1)
    bg, fg, neg = affinity_labels(mask, radius=2, cover_border=True)
    src, dst = path_indices(2, 1, 5)
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert bg.tolist() == [[1, 0, 0, 0]] and fg.tolist() == [[0, 0, 0, 0]] and neg.tolist() == [[0, 1, 1, 0]]
    bg, fg, neg = affinity_labels(torch.tensor([[[1, 1, 1]]]), radius=2, cover_border=True)
    assert fg.tolist() == [[1, 1]] and bg.sum() == 0 and neg.sum() == 0


def test_affinity_loss_hand_computed():
    mask = torch.tensor([[[0, 0, 1, 1, 2]]])  # pairs: bg (0,1), neg (1,2), fg (2,3), neg (3,4)
    aff = torch.tensor([[0.5, 0.2, 0.8, 0.1]], requires_grad=True)
    out = affinity_loss(aff, mask, radius=2, cover_border=True, eps=0.0)
    bg, fg, neg = -math.log(0.5), -math.log(0.8), (-math.log(0.8) - math.log(0.9)) / 2
    assert out["bg"].item() == pytest.approx(bg) and out["fg"].item() == pytest.approx(fg)
    assert out["neg"].item() == pytest.approx(neg, rel=1e-5)
    assert out["loss"].item() == pytest.approx(bg / 4 + fg / 4 + neg / 2, rel=1e-5)
    out["loss"].backward()
    assert aff.grad.abs().min() > 0


@pytest.mark.parametrize("size", [(48, 64), (40, 40)])
def test_affinity_net_shapes(size):
    torch.manual_seed(0)
    net = AffinityNet(**TINY).eval()
    emb = net(torch.rand(2, 3, *size))
    assert emb.shape == (2, 8, math.ceil(size[0] / 8), math.ceil(size[1] / 8))


def test_training_step_gradients_reach_trainable_parameters_only():
    torch.manual_seed(0)
    ref = PSARefiner(**TINY)
    assert ref.trainable
    images = torch.rand(2, 3, 80, 80)  # a 10×10 grid: PSA's cropped pair layout needs ≥ 5×9
    target = torch.zeros(2, 80, 80, dtype=torch.long)
    target[:, 16:56, 16:56] = 3
    target[:, :, 72:] = 255
    out = ref.training_step({"image": images, "target": target})
    assert set(out) == {"loss", "bg", "fg", "neg"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    frozen = {id(p) for p in list(ref.net.trunk.stem.parameters()) + list(ref.net.trunk.stages[0].parameters())}
    for name, p in ref.named_parameters():
        if id(p) in frozen or not p.requires_grad:  # stem, b2 and every BatchNorm (official)
            assert p.grad is None, name
        else:
            assert p.grad is not None, name
    before = out["loss"].item()
    opt = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        loss = ref.training_step({"image": images, "target": target})["loss"]
        loss.backward()
        opt.step()
    assert ref.training_step({"image": images, "target": target})["loss"].item() < before
    with pytest.raises(ValueError, match="cropped layout"):  # too small for radius 5
        ref.training_step({"image": images[..., :64, :64], "target": target[..., :64, :64]})


def test_refine_shapes_and_probabilities():
    torch.manual_seed(0)
    ref = PSARefiner(**TINY).eval()
    images = torch.rand(2, 3, 60, 70)  # not a multiple of 8
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    cams = torch.rand(2, 3, 60, 70) * labels[:, :, None, None]
    probs = ref.refine(images, cams, labels)
    assert probs.shape == (2, 4, 60, 70)
    assert torch.allclose(probs.sum(1), torch.ones(2, 60, 70), atol=1e-5)
    assert probs[0, 2].abs().max() == 0 and probs[1, 1].abs().max() == 0 and probs[1, 3].abs().max() == 0
    with pytest.raises(ValueError, match="image size"):
        ref.refine(images, torch.zeros(2, 60, 70, dtype=torch.long), labels)


def test_entry_point_and_create():
    import importlib.metadata
    import pathlib

    import tomllib

    import wsss_kit

    pyproject = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["wsss_kit.refiners"]["psa_rw"] == "wsss_affinity.affinity:PSARefiner"
    assert PSARefiner.wsss_api_version == "1.0" and issubclass(PSARefiner, wsss_kit.Refiner)
    installed = {ep.name for ep in importlib.metadata.entry_points(group="wsss_kit.refiners")}
    if "psa_rw" not in installed:
        pytest.skip("wsss-kit-affinity is installed without psa_rw: reinstall it (pip install -e plugins/affinity)")
    ref = wsss_kit.create("refiners", "psa_rw", **TINY)
    assert isinstance(ref, PSARefiner)


def test_trunk_weights_load_strictly(tmp_path):
    from wsss_deeplab import WideResNet38
    from wsss_kit.errors import WeightsError

    torch.manual_seed(1)
    trunk_kw = {k: v for k, v in TINY.items() if k not in ("embed_widths", "embed_dim")}
    source = WideResNet38(**trunk_kw)
    path = tmp_path / "wr38.pth"
    torch.save({"backbone." + k: v for k, v in source.state_dict().items()}, path)
    net = AffinityNet(**TINY, weights=str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(net.trunk.state_dict()[k], v), k
    wider = dict(TINY, stem_width=6)
    with pytest.raises(WeightsError):
        AffinityNet(**wider, weights=str(path))


def test_refine_with_alpha_background_and_psa_layout():
    torch.manual_seed(0)
    ref = PSARefiner(**TINY, alpha=12, cover_border=False).eval()
    images = torch.rand(1, 3, 80, 80)  # 10×10 grid: PSA's cropped layout needs ≥ 5×9
    labels = torch.tensor([[0.0, 1.0]])
    cams = torch.rand(1, 2, 80, 80) * labels[:, :, None, None]
    probs = ref.refine(images, cams, labels)
    assert probs.shape == (1, 3, 80, 80) and torch.isfinite(probs).all()
    assert probs[0, 1].abs().max() == 0


def test_sparse_walk_matches_dense():
    torch.manual_seed(0)
    ref = PSARefiner(**TINY, log_t=3).eval()
    images, labels = torch.rand(1, 3, 48, 56), torch.tensor([[1.0, 0.0]])
    cams = torch.rand(1, 2, 48, 56) * labels[:, :, None, None]
    dense = ref.refine(images, cams, labels)
    ref.sparse_walk = True
    assert torch.allclose(ref.refine(images, cams, labels), dense, atol=1e-5)


# ---------------------------------------------------------------- official AffinityNet checkpoints

AFF_TRUNK = {k: v for k, v in TINY_WR38.items() if k != "head_width"}


def test_psa_checkpoint_matches_the_official_forward(tmp_path):
    state = psa_aff_state()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "res38_aff.pth")  # DataParallel prefix
    ref = PSARefiner(**AFF_TRUNK, embed_widths=(4, 4, 8), embed_dim=16, checkpoint=str(tmp_path / "res38_aff.pth"))
    ref.eval()
    for size in [(48, 64), (40, 40)]:
        images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(ref.net(images), psa_aff_reference(state, images), atol=1e-5)
    torch.save(ref.state_dict(), tmp_path / "own.pth")  # this refiner's layout loads too
    again = PSARefiner(**AFF_TRUNK, embed_widths=(4, 4, 8), embed_dim=16, checkpoint=str(tmp_path / "own.pth"))
    assert torch.equal(again.net.embed.weight, state["f9.weight"])
    assert get_converter("psa_affinity_net") is convert_psa_affinity_net


def test_psa_converter_errors(tmp_path):
    from wsss_kit.errors import WeightsError

    with pytest.raises(WeightsError, match="segmentation network"):
        convert_psa_affinity_net(resnet38_state(num_classes=3, counters=True))
    with pytest.raises(WeightsError, match="weights="):
        convert_psa_affinity_net(resnet38_state())
    with pytest.raises(WeightsError, match="lacks the affinity layers f8_4.weight"):
        convert_psa_affinity_net({k: v for k, v in psa_aff_state().items() if not k.startswith("f8_4")})
    with pytest.raises(WeightsError, match="keys the network does not: fc8.weight"):
        convert_psa_affinity_net(psa_aff_state() | {"fc8.weight": torch.zeros(20, 48, 1, 1)})
    torch.save(psa_aff_state(embed=(4, 4, 6)), tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"proj\.2\.weight: file \(6, 48, 1, 1\) vs model \(8, 48, 1, 1\)"):
        PSARefiner(**AFF_TRUNK, embed_widths=(4, 4, 8), embed_dim=16, checkpoint=str(tmp_path / "other.pth"))


def test_training_targets_protocol():
    image = torch.zeros(3, 24, 32)
    image[:, :, 16:] = 1.0
    cams = torch.zeros(2, 24, 32)
    cams[1, :, 16:] = 1.0
    cams[0] = 0.7  # class 1 is absent from the labels
    target = PSARefiner(**TINY).training_targets(image, cams, torch.tensor([0.0, 1.0]))
    assert target.dtype == torch.int64 and target.shape == (24, 32)
    assert set(target.unique().tolist()) <= {0, 2, 255} and (target[:, 20:] == 2).all() and (target[:, :12] == 0).all()


def test_batchnorm_and_stem_stay_frozen_and_param_groups_follow_train_aff():
    from wsss_kit.batchnorm import batchnorm_layers

    torch.manual_seed(0)
    ref = PSARefiner(**TINY).train()
    net = ref.net
    bns = batchnorm_layers(net.trunk)
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert all(not p.requires_grad for p in net.trunk.stem.parameters())
    before = [m.running_mean.clone() for m in bns]
    target = torch.zeros(2, 80, 80, dtype=torch.long)
    target[:, 16:56, 16:56] = 3
    ref.training_step({"image": torch.rand(2, 3, 80, 80), "target": target})
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bns))  # statistics never updated
    groups = ref.param_groups(0.01)
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    trainable = {id(p) for p in ref.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)
    assert {id(p) for p in net.embed.parameters()} <= {id(p) for p in groups[1]["params"]}
    # A randomly initialised trunk trains its BatchNorm and stem when asked.
    free = PSARefiner(**TINY, freeze_bn=False, freeze_stem=False).train()
    assert all(m.training and m.weight.requires_grad for m in batchnorm_layers(free.net.trunk))
    assert all(p.requires_grad for p in free.net.trunk.stem.parameters())
