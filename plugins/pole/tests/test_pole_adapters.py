"""POLE's weakly supervised adapters: v* = r·A(v) + (1 − r)·v (Eqs. 7–8, Table 4)."""

from __future__ import annotations

import pytest
import torch

from wsss_pole.adapters import ADAPTER_MODES, AdaptedFeatures, Adapter, adapted_features, adapter_mlp, ratio_mix


@pytest.mark.parametrize("shape", [(4, 512), (2, 3, 512)])
def test_adapter_shapes_and_layout(shape: tuple[int, ...]) -> None:
    adapter = Adapter(512)
    assert adapter.fc1.weight.shape == (128, 512) and adapter.fc2.weight.shape == (512, 128)
    assert adapter.fc1.bias is None and adapter.fc2.bias is None
    out = adapter(torch.randn(shape))
    assert out.shape == shape and out.dtype == torch.float32 and (out >= 0).all()  # final ReLU
    assert AdaptedFeatures(512)(torch.randn(shape)).shape == shape


def test_vector_ratio_starts_at_02_and_learns() -> None:
    torch.manual_seed(0)
    mod = AdaptedFeatures(512, "vector")
    assert isinstance(mod.ratio, torch.nn.Parameter) and mod.ratio.shape == (512,)
    assert torch.equal(mod.ratio.detach(), torch.full((512,), 0.2))
    mod(torch.randn(6, 512)).square().sum().backward()
    for name, p in mod.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n for n, _ in mod.named_parameters()} == {"ratio", "adapter.fc1.weight", "adapter.fc2.weight"}


def test_none_is_identity() -> None:
    mod = AdaptedFeatures(8, "none")
    v = torch.randn(3, 8)
    assert torch.equal(mod(v), v) and not list(mod.parameters()) and mod.ratio is None


def test_fixed_ratio_gets_no_gradient_but_adapter_does() -> None:
    mod = AdaptedFeatures(16, "fixed", ratio=0.3)
    assert "ratio" not in dict(mod.named_parameters()) and "ratio" in dict(mod.named_buffers())
    assert float(mod.ratio) == pytest.approx(0.3) and not mod.ratio.requires_grad
    mod(torch.randn(5, 16)).sum().backward()
    assert mod.ratio.grad is None
    assert mod.adapter.fc1.weight.grad.abs().sum() > 0 and mod.adapter.fc2.weight.grad.abs().sum() > 0


def test_scalar_ratio_is_one_learnable_number() -> None:
    mod = AdaptedFeatures(16, "scalar")
    assert mod.ratio.shape == () and float(mod.ratio.detach()) == pytest.approx(0.2)
    mod(torch.randn(5, 16)).sum().backward()
    assert mod.ratio.grad is not None


def test_hand_computed_two_dimensional() -> None:
    mod = AdaptedFeatures(2, "vector", hidden=1)
    with torch.no_grad():
        mod.adapter.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))
        mod.adapter.fc2.weight.copy_(torch.tensor([[2.0], [-0.5]]))
    v = torch.tensor([[3.0, 1.0], [1.0, 3.0]])
    # row 0: h = relu(3 - 1) = 2; A = relu([4, -1]) = [4, 0]; v* = 0.2·[4, 0] + 0.8·[3, 1] = [3.2, 0.8]
    # row 1: h = relu(1 - 3) = 0; A = [0, 0];                 v* = 0.8·[1, 3] = [0.8, 2.4]
    assert torch.allclose(mod(v), torch.tensor([[3.2, 0.8], [0.8, 2.4]]))
    paper = AdaptedFeatures(2, "vector", hidden=1, final_relu=False)  # the paper's A: no last ReLU
    paper.load_state_dict(mod.state_dict())
    assert torch.allclose(paper(v)[0], torch.tensor([3.2, 0.6]))  # 0.2·[4, -1] + 0.8·[3, 1]
    with torch.no_grad():
        mod.ratio.copy_(torch.tensor([1.0, 0.0]))  # per-channel: channel 0 fully adapted, channel 1 untouched
    assert torch.allclose(mod(v)[0], torch.tensor([4.0, 1.0]))


def test_functional_matches_module_and_errors() -> None:
    mod = AdaptedFeatures(8, "fixed", hidden=3)
    v = torch.randn(4, 8)
    adapted = adapter_mlp(v, mod.adapter.fc1.weight, mod.adapter.fc2.weight)
    assert torch.allclose(mod(v), ratio_mix(v, adapted, 0.2))
    assert torch.allclose(mod(v), adapted_features(v, mod.adapter, mod.ratio))
    assert adapted_features(v, None, 0.5) is v
    with pytest.raises(ValueError, match="last dimension 7, but AdaptedFeatures was built for 8"):
        mod(torch.randn(2, 7))
    with pytest.raises(ValueError, match="adapter mode must be one of"):
        AdaptedFeatures(8, "learned")
    with pytest.raises(ValueError, match=r"ratio must be a scalar or \(8,\)"):
        ratio_mix(v, adapted, torch.ones(3))
    with pytest.raises(ValueError, match=r"\(H, D\) and \(D, H\)"):
        adapter_mlp(v, torch.ones(3, 8), torch.ones(3, 8))
    assert ADAPTER_MODES == ("none", "fixed", "scalar", "vector")


def test_deterministic_under_seed() -> None:
    torch.manual_seed(3)
    a = AdaptedFeatures(16)
    torch.manual_seed(3)
    b = AdaptedFeatures(16)
    v = torch.randn(2, 16)
    assert torch.equal(a(v), b(v))


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w1 = torch.randn(2, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w2 = torch.randn(4, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    r = torch.full((4,), 0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, w1, w2, r: ratio_mix(v, adapter_mlp(v, w1, w2), r), (v, w1, w2, r))
    torch.manual_seed(0)
    mod = AdaptedFeatures(4, "vector", hidden=2).double()
    assert torch.autograd.gradcheck(mod, (v,))
