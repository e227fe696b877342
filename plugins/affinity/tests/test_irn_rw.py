"""refiners/irn_rw: IRNet's boundary branch on a tiny timm ResNet, training step and refine."""

from __future__ import annotations

import pytest
import torch
from deeplab_official_layouts import TINY_IRN, irn_reference, irn_state, resnet38_state

import wsss_kit
from wsss_affinity.convert_affinity import convert_irn_resnet50
from wsss_affinity.irn import BoundaryBranch, IRNBackbone, IRNRefiner, displacement_loss, pair_displacement
from wsss_affinity.random_walk import path_indices, search_offsets

TINY_DP = dict(dp_widths=(8, 8, 16, 16, 16, 16, 16), dp_groups=(2, 4, 4, 4, 4, 4, 4))


def _tiny(**kw):
    return IRNRefiner(backbone="test_resnet", width=8, **{**TINY_DP, **kw})


@pytest.mark.parametrize("size", [(64, 64), (72, 88)])
def test_backbone_strides_and_boundary_shape(size):
    torch.manual_seed(0)
    backbone = IRNBackbone("test_resnet")
    feats = backbone(torch.rand(1, 3, *size))
    h, w = size
    assert [f.shape[-2:] for f in feats] == [
        torch.Size(((h + 3) // 4, (w + 3) // 4)), torch.Size(((h + 3) // 4, (w + 3) // 4)),
        torch.Size(((h + 7) // 8, (w + 7) // 8)), torch.Size(((h + 15) // 16, (w + 15) // 16)),
        torch.Size(((h + 15) // 16, (w + 15) // 16))]
    logits = BoundaryBranch(backbone.channels, width=8)(feats)
    assert logits.shape == (1, 1, (h + 3) // 4, (w + 3) // 4)


def test_training_step_trains_the_branches_only():
    torch.manual_seed(0)
    ref = _tiny()
    assert ref.trainable and isinstance(ref, wsss_kit.Refiner)
    ref.train()
    assert not ref.backbone.body.training  # frozen backbone stays in eval mode
    images = torch.rand(2, 3, 96, 96)  # 24×24 boundary grid: radius 10 (cropped layout) needs ≥ 10×19
    target = torch.zeros(2, 96, 96, dtype=torch.long)
    target[:, 24:72, 24:72] = 2
    target[:, :8] = 255
    out = ref.training_step({"image": images, "target": target})
    assert set(out) == {"loss", "bg", "fg", "neg", "dp_fg", "dp_bg"} and torch.isfinite(out["loss"])
    terms = out["bg"] / 4 + out["fg"] / 4 + out["neg"] / 2 + (out["dp_fg"] + out["dp_bg"]) / 2
    assert out["loss"].item() == pytest.approx(terms.item(), rel=1e-5)
    out["loss"].backward()
    for name, p in ref.named_parameters():
        if name.startswith("backbone."):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_refine_shapes_and_absent_classes():
    torch.manual_seed(0)
    ref = _tiny().eval()
    images = torch.rand(2, 3, 50, 62)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cams = torch.rand(2, 2, 50, 62) * labels[:, :, None, None]
    probs = ref.refine(images, cams, labels)
    assert probs.shape == (2, 3, 50, 62)
    assert torch.allclose(probs.sum(1), torch.ones(2, 50, 62), atol=1e-5)
    assert probs[0, 2].abs().max() == 0 and probs[1, 1].abs().max() == 0
    with pytest.raises(ValueError, match="image size"):
        ref.refine(images, torch.zeros(2, 50, 62, dtype=torch.long), labels)


def test_entry_point_and_create():
    import importlib.metadata
    import pathlib

    import tomllib

    pyproject = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["wsss_kit.refiners"]["irn_rw"] == "wsss_affinity.irn:IRNRefiner"
    assert IRNRefiner.wsss_api_version == "1.0" and issubclass(IRNRefiner, wsss_kit.Refiner)
    installed = {ep.name for ep in importlib.metadata.entry_points(group="wsss_kit.refiners")}
    if "irn_rw" not in installed:
        pytest.skip("wsss-kit-affinity is installed without irn_rw: reinstall it (pip install -e plugins/affinity)")
    assert isinstance(wsss_kit.create("refiners", "irn_rw", backbone="test_resnet", width=8), IRNRefiner)


def test_sparse_walk_matches_dense():
    torch.manual_seed(0)
    ref = _tiny(exp_times=4).eval()
    images, labels = torch.rand(1, 3, 40, 48), torch.tensor([[1.0, 1.0]])
    cams = torch.rand(1, 2, 40, 48)
    dense = ref.refine(images, cams, labels)
    ref.sparse_walk = True
    assert torch.allclose(ref.refine(images, cams, labels), dense, atol=1e-5)


def test_boundary_only_refiner_has_no_displacement_branch():
    torch.manual_seed(0)
    ref = _tiny(displacement=False)
    assert ref.displacement is None and not any(n.startswith("displacement") for n, _ in ref.named_parameters())
    target = torch.zeros(1, 96, 96, dtype=torch.long)
    out = ref.training_step({"image": torch.rand(1, 3, 96, 96), "target": target})
    assert set(out) == {"loss", "bg", "fg", "neg"}
    with pytest.raises(RuntimeError, match="displacement=False"):
        ref.displacement_field(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("size", [(64, 64), (72, 90)])
def test_displacement_field_shapes(size):
    torch.manual_seed(0)
    ref = _tiny().eval()
    disp = ref.displacement_field(torch.rand(2, 3, *size))
    h, w = size
    assert disp.shape == (2, 2, (h + 3) // 4, (w + 3) // 4) and disp.dtype == torch.float32
    assert ref.boundary_logits(torch.rand(2, 3, *size)).shape == (2, 1, (h + 3) // 4, (w + 3) // 4)


def test_gradients_reach_both_branches_and_param_groups():
    torch.manual_seed(0)
    ref = _tiny().train()
    target = torch.zeros(2, 96, 96, dtype=torch.long)
    target[:, 20:76, 30:80] = 1
    target[:, 60:] = 255
    ref.training_step({"image": torch.rand(2, 3, 96, 96), "target": target})["loss"].backward()
    for name, p in ref.named_parameters():
        if name.startswith("backbone."):
            assert p.grad is None and not p.requires_grad, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    groups = ref.param_groups(0.1)
    assert [g["lr"] for g in groups] == [0.1, pytest.approx(1.0)]
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in ref.parameters() if p.requires_grad}


def _pairs_by_hand(h, w, radius):
    """Pairs (p, q) closer than ``radius`` with ``p`` before ``q`` in raster order, as coordinates."""
    pts = [(y, x) for y in range(h) for x in range(w)]
    return [(p, q) for i, p in enumerate(pts) for q in pts[i + 1:]
            if (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2 < radius ** 2]


def test_displacement_loss_hand_computed():
    torch.manual_seed(0)
    disp = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    mask = torch.tensor([[[1, 1, 0], [1, 255, 0], [2, 0, 0]]])
    pairs = _pairs_by_hand(3, 3, 2)
    fg_sum = bg_sum = n_fg = n_bg = 0.0
    for p, q in pairs:
        a, b = int(mask[0][p]), int(mask[0][q])
        d = disp[0, :, p[0], p[1]] - disp[0, :, q[0], q[1]]
        if a == b == 0:
            bg_sum, n_bg = bg_sum + d.abs().sum().item(), n_bg + 1
        elif a == b and a not in (0, 255):
            target = torch.tensor([q[0] - p[0], q[1] - p[1]], dtype=torch.float64)
            fg_sum, n_fg = fg_sum + (d - target).abs().sum().item(), n_fg + 1
    assert n_fg > 0 and n_bg > 0
    out = displacement_loss(disp, mask, radius=2, cover_border=True, eps=0.0)
    assert out["dp_fg"].item() == pytest.approx(fg_sum / (2 * n_fg))
    assert out["dp_bg"].item() == pytest.approx(bg_sum / (2 * n_bg))
    assert out["loss"].item() == pytest.approx(fg_sum / (4 * n_fg) + bg_sum / (4 * n_bg))
    # a field pointing every foreground pixel at one centroid costs nothing: D(i) − D(j) = j − i
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(22.0), indexing="ij")
    centroid = torch.stack([5.0 - ys, 9.0 - xs])[None]
    fg = torch.ones(1, 12, 22, dtype=torch.long)
    assert displacement_loss(centroid, fg, radius=4)["dp_fg"].item() == pytest.approx(0.0, abs=1e-6)
    assert displacement_loss(-centroid, fg, radius=4)["dp_fg"].item() > 1.0  # the opposite sign is penalised


def test_pair_displacement_offsets_follow_path_indices():
    disp = torch.randn(2, 2, 10, 20)
    pair, offsets = pair_displacement(disp, radius=10, cover_border=False)
    src, dst = path_indices(10, 10, 20, cover_border=False)
    assert pair.shape == (2, 2, src.numel()) and offsets.shape == (2, src.numel())
    assert torch.equal(offsets[0].long() * 20 + offsets[1].long(), dst - src)
    assert set(map(tuple, offsets.T.long().tolist())) == set(search_offsets(10))


def test_mean_shift_identity_in_training_subtracted_in_eval():
    torch.manual_seed(0)
    ref = _tiny()
    feats = ref.features(torch.rand(1, 3, 48, 48))
    ref.displacement.running_mean.copy_(torch.tensor([0.5, -1.0]))
    raw = ref.displacement.field(feats)
    assert torch.equal(ref.train().displacement(feats), raw)
    shifted = ref.eval().displacement(feats)
    assert torch.allclose(shifted, raw - torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))


def test_calibrate_mean_shift_is_the_mean_raw_displacement():
    torch.manual_seed(0)
    ref = _tiny().train()
    batches = [torch.rand(2, 3, 40, 40), {"image": torch.rand(1, 3, 40, 40)}]
    expected = torch.stack([ref.displacement.field(ref.features(batches[0])).mean(dim=(0, 2, 3)),
                            ref.displacement.field(ref.features(batches[1]["image"])).mean(dim=(0, 2, 3))]).mean(0)
    got = ref.calibrate_mean_shift(batches)
    assert torch.allclose(got, expected, atol=1e-6) and ref.training
    assert torch.allclose(ref.calibrate_mean_shift(batches), expected, atol=1e-6)  # idempotent
    raw0 = ref.displacement.field(ref.features(batches[0])).mean(dim=(0, 2, 3))
    assert torch.allclose(ref.eval().displacement_field(batches[0]).mean(dim=(0, 2, 3)), raw0 - expected, atol=1e-6)


def test_training_step_is_deterministic():
    target = torch.zeros(1, 96, 96, dtype=torch.long)
    target[:, 30:70, 30:70] = 1
    images = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append(_tiny().training_step({"image": images, "target": target}))
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


# ---------------------------------------------------------------- official checkpoints


def _official_refiner(**kw):
    return IRNRefiner(backbone="resnet50", backbone_args=dict(layers=TINY_IRN["layers"], channels=TINY_IRN["channels"]),
                      width=TINY_IRN["edge_width"], dp_widths=TINY_IRN["dp_widths"], dp_groups=TINY_IRN["dp_groups"],
                      **kw)


@pytest.mark.parametrize("version", ["final", "older"])
def test_irn_checkpoint_matches_the_official_forward(tmp_path, version):
    state = irn_state(version=version)
    path = tmp_path / "res50_irn.pth"
    torch.save(state, path)
    ref = _official_refiner(checkpoint=str(path)).eval()
    for size in [(64, 64), (72, 88)]:
        images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
        edge, disp = irn_reference(state, images)
        assert torch.allclose(ref.boundary_logits(images), edge, atol=1e-5)
        assert torch.allclose(ref.displacement_field(images), disp, atol=1e-5)
    boundary_only = _official_refiner(displacement=False, checkpoint=str(path))
    assert torch.equal(boundary_only.boundary.head.weight, state["fc_edge6.weight"])
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, tmp_path / "own.pth")  # own layout, DDP
    again = _official_refiner(checkpoint=str(tmp_path / "own.pth"))
    assert torch.equal(again.displacement.running_mean, state["fc_dp7.4.running_mean"])


def test_irn_converter_errors(tmp_path):
    from wsss_kit.errors import WeightsError
    from wsss_kit.weights import get_converter

    state = irn_state()
    assert get_converter("irn_resnet50") is convert_irn_resnet50
    cam = ({k: v for k, v in state.items() if k.startswith(("resnet50.", "stage"))}
           | {"classifier.weight": torch.zeros(20, 64, 1, 1)})
    with pytest.raises(WeightsError, match="CAM network"):
        convert_irn_resnet50(cam)
    with pytest.raises(WeightsError, match="segmentation network|ResNet38"):
        convert_irn_resnet50(resnet38_state(num_classes=3))
    with pytest.raises(WeightsError, match="unknown.key|keys the network does not: extra.weight"):
        convert_irn_resnet50(state | {"extra.weight": torch.zeros(1)})
    no_dp = {k: v for k, v in state.items() if "dp" not in k and "mean_shift" not in k}
    with pytest.raises(WeightsError, match="displacement=False"):
        convert_irn_resnet50(no_dp)
    missing = {k: v for k, v in state.items() if not k.startswith("fc_edge3.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing keys: boundary\.levels\.2\.0\.weight"):
        _official_refiner(checkpoint=str(tmp_path / "missing.pth"))
    wider = state | {"fc_edge6.weight": torch.zeros(1, 48, 1, 1)}
    torch.save(wider, tmp_path / "wider.pth")
    with pytest.raises(WeightsError, match=r"boundary\.head\.weight: file \(1, 48, 1, 1\) vs model \(1, 40, 1, 1\)"):
        _official_refiner(checkpoint=str(tmp_path / "wider.pth"))


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_resnet")
    path = tmp_path / "tv_resnet.pth"
    torch.save(source.state_dict(), path)
    backbone = IRNBackbone("test_resnet", weights=str(path))
    ours = backbone.body.state_dict()
    shared = [k for k in source.state_dict() if k in ours]
    assert len(shared) > 10 and all(torch.equal(ours[k], source.state_dict()[k]) for k in shared)
    assert not any(p.requires_grad for p in backbone.parameters())
    with pytest.raises(Exception, match="tv_resnet.pth"):
        torch.save({"conv1.weight": torch.zeros(1)}, path)
        IRNBackbone("test_resnet", weights=str(path))
