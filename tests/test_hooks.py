"""The optional plugin hooks declared as Protocols in wsss_kit.interfaces, and where the engine and the
pipeline use them (param groups, training targets, load-weights, with the deprecated hook name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import wsss_kit
from wsss_kit.engine import TrainConfig, build_optimizer
from wsss_kit.interfaces import (
    HOOKS,
    HasParamGroups,
    HasTrainingStep,
    HasTrainingTargets,
    LoadsWeights,
    makes_own_targets,
)
from wsss_kit.pipeline.checkpoints import build_from_checkpoint


class Head(wsss_kit.RetrainHead):
    wsss_api_version = "1.0"

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 3
        self.backbone = nn.Conv2d(3, 4, 1)
        self.classifier = nn.Conv2d(4, 3, 1)
        self.loaded: list[Any] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(images))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(self.backbone.parameters()), "lr_mult": 1.0},
                {"params": list(self.classifier.parameters()), "lr_mult": 10.0}]


class HookedHead(Head):
    def load_weights(self, checkpoint: Any) -> None:
        self.loaded.append(("load_weights", checkpoint))


class LegacyHead(Head):
    def load_checkpoint(self, checkpoint: Any) -> None:
        self.loaded.append(("load_checkpoint", checkpoint))


class TargetRefiner(wsss_kit.Refiner):
    def refine(self, images: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cams

    def training_targets(self, image: torch.Tensor, cams: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cams.argmax(0)

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"loss": torch.zeros(())}


def test_protocols_are_checked_structurally() -> None:
    head, refiner = Head(), TargetRefiner()
    assert isinstance(head, HasParamGroups) and not isinstance(head, LoadsWeights)
    assert isinstance(HookedHead(), LoadsWeights) and not isinstance(LegacyHead(), LoadsWeights)
    assert isinstance(refiner, HasTrainingStep) and isinstance(refiner, HasTrainingTargets)
    assert not isinstance(head, HasTrainingStep) and not isinstance(head, HasTrainingTargets)
    assert makes_own_targets(TargetRefiner) and makes_own_targets(refiner)  # a class or an instance
    assert not makes_own_targets(Head) and not makes_own_targets(lambda: None)
    assert set(HOOKS) == {HasParamGroups, HasTrainingStep, HasTrainingTargets, LoadsWeights}
    for hook in HOOKS:
        assert hook.__doc__ and all(getattr(hook, m).__doc__ for m in hook.__dict__ if not m.startswith("_")
                                    and callable(getattr(hook, m)))


def test_build_optimizer_uses_the_param_groups_hook() -> None:
    opt = build_optimizer(Head(), TrainConfig(steps=1, lr=0.01, optimizer="sgd"))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    plain = nn.Sequential(nn.Conv2d(3, 2, 1))
    assert [g["lr"] for g in build_optimizer(plain, TrainConfig(steps=1, lr=0.01)).param_groups] == [0.01]


@pytest.fixture
def heads() -> Any:
    for name, cls in (("hooked_head", HookedHead), ("legacy_head", LegacyHead)):
        wsss_kit.register("heads", name, cls, override=True)
    yield
    for name in ("hooked_head", "legacy_head"):
        wsss_kit.registry.default_registry().unregister("heads", name)


def test_pipeline_loads_a_checkpoint_through_the_load_weights_hook(heads: None, tmp_path: Path) -> None:
    model, spec = build_from_checkpoint({"type": "heads/hooked_head"}, "head", checkpoint="x.pt")
    assert spec == "x.pt" and model.loaded == [("load_weights", "x.pt")]


def test_the_old_hook_name_still_works_with_a_deprecation_warning(heads: None) -> None:
    with pytest.warns(DeprecationWarning, match=r"LegacyHead.load_checkpoint is deprecated .* rename it load_weights"):
        model, _ = build_from_checkpoint({"type": "heads/legacy_head"}, "head", checkpoint="y.pt")
    assert model.loaded == [("load_checkpoint", "y.pt")]
