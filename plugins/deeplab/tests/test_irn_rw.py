"""refiners/irn_rw: IRNet's boundary branch on a tiny timm ResNet, training step and refine."""

from __future__ import annotations

import pytest
import torch
from wsss_deeplab.irn import BoundaryBranch, IRNBackbone, IRNRefiner

import wsss_kit


def _tiny(**kw):
    return IRNRefiner(backbone="test_resnet", width=8, **kw)


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


def test_training_step_trains_the_branch_only():
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
    assert set(out) == {"loss", "bg", "fg", "neg"} and torch.isfinite(out["loss"])
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
    assert pyproject["project"]["entry-points"]["wsss_kit.refiners"]["irn_rw"] == "wsss_deeplab.irn:IRNRefiner"
    assert IRNRefiner.wsss_api_version == "1.0" and issubclass(IRNRefiner, wsss_kit.Refiner)
    installed = {ep.name for ep in importlib.metadata.entry_points(group="wsss_kit.refiners")}
    if "irn_rw" not in installed:
        pytest.skip("wsss-kit-deeplab is installed without irn_rw: reinstall it (pip install -e plugins/deeplab)")
    assert isinstance(wsss_kit.create("refiners", "irn_rw", backbone="test_resnet", width=8), IRNRefiner)


def test_sparse_walk_matches_dense():
    torch.manual_seed(0)
    ref = _tiny(exp_times=4).eval()
    images, labels = torch.rand(1, 3, 40, 48), torch.tensor([[1.0, 1.0]])
    cams = torch.rand(1, 2, 40, 48)
    dense = ref.refine(images, cams, labels)
    ref.sparse_walk = True
    assert torch.allclose(ref.refine(images, cams, labels), dense, atol=1e-5)
