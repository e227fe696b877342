"""TrainConfig.optimizer_impl: torch's fused / foreach / per-parameter optimizer kernels give the same
updates (to float rounding), ``auto`` picks the fused AdamW on the CPU, and bad values are refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from wsss_kit.engine import TrainConfig, build_optimizer
from wsss_kit.errors import ConfigError


class Grouped(nn.Module):
    """Two layers in two groups (one at 10x the lr, one without weight decay), as CAM models have."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(self.body.parameters()), "lr_mult": 1.0},
                {"params": list(self.head.parameters()), "lr_mult": 10.0, "weight_decay": 0.0}]


def _train(optimizer: str, impl: str, steps: int = 4) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
    model = Grouped()
    opt = build_optimizer(model, TrainConfig(steps=steps, lr=0.01, optimizer=optimizer, weight_decay=0.05,
                                             optimizer_impl=impl))
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=gen), torch.randn(8, 3, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, opt


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_every_impl_gives_the_same_updates(optimizer: str) -> None:
    reference, _ = _train(optimizer, "for_loop")
    start = Grouped().state_dict()
    for impl in ("auto", "fused", "foreach"):
        got, _ = _train(optimizer, impl)
        for name, value in got.items():
            assert not torch.equal(value, start[name])  # the steps moved every tensor
            torch.testing.assert_close(value, reference[name], rtol=1e-6, atol=1e-7, msg=f"{impl} {name}")


def test_auto_is_fused_adamw_and_default_sgd() -> None:
    _, adamw = _train("adamw", "auto", steps=1)
    assert adamw.defaults["fused"] is True
    _, sgd = _train("sgd", "auto", steps=1)
    assert not sgd.defaults.get("fused") and sgd.defaults.get("foreach") is None
    _, loop = _train("adamw", "for_loop", steps=1)
    assert loop.defaults["foreach"] is False and not loop.defaults.get("fused")


def test_a_fused_state_resumes_in_a_loop_optimizer() -> None:
    """optimizer_impl may change between runs (not a trajectory field): the state dicts fit."""
    _, fused = _train("adamw", "fused", steps=2)
    model = Grouped()
    loop = build_optimizer(model, TrainConfig(steps=1, lr=0.01, optimizer="adamw", optimizer_impl="for_loop"))
    loop.load_state_dict(fused.state_dict())
    assert float(loop.state_dict()["state"][0]["step"]) == 2.0


def test_bad_values_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"train\.optimizer_impl must be one of auto, fused, foreach, for_loop; "
                                          r"got 'fuse' \(did you mean 'fused'"):
        TrainConfig(steps=1, optimizer_impl="fuse")
    with pytest.raises(ConfigError, match="unknown key 'optimiser_impl'"):
        TrainConfig.from_dict({"steps": 1, "optimiser_impl": "fused"})
    assert TrainConfig.from_dict({"steps": 1, "optimizer_impl": "FOREACH"}).optimizer_impl == "foreach"
