"""wsss_kit.batchnorm: the one BatchNorm-freezing helper the plugins' train() overrides use."""

from __future__ import annotations

import torch
from torch import nn

from wsss_kit.batchnorm import batchnorm_layers, freeze_batchnorm, freeze_batchnorm_params, set_batchnorm_mode


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.SyncBatchNorm(4))
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2), nn.Dropout())

    def train(self, mode: bool = True) -> "Net":
        super().train(mode)
        freeze_batchnorm(self.body)
        return self


def test_layers_include_the_module_itself_and_subclasses() -> None:
    net = Net()
    assert [type(m) for m in batchnorm_layers(net)] == [nn.BatchNorm2d, nn.SyncBatchNorm, nn.BatchNorm2d]
    bn = nn.BatchNorm1d(3)
    assert batchnorm_layers(bn) == [bn]
    assert batchnorm_layers(nn.Conv2d(1, 1, 1)) == []


def test_train_keeps_the_frozen_part_in_eval_mode_and_its_statistics_fixed() -> None:
    net = Net().train()
    assert [m.training for m in batchnorm_layers(net)] == [False, False, True]
    assert net.head[2].training and net.body[0].training  # only BatchNorm layers are touched
    before = net.body[1].running_mean.clone()
    net.body[:3](torch.randn(2, 3, 8, 8))
    assert torch.equal(net.body[1].running_mean, before)


def test_set_mode_and_freeze_params() -> None:
    net = Net().eval()
    set_batchnorm_mode(net.head, True)
    assert [m.training for m in batchnorm_layers(net)] == [False, False, True] and not net.head[2].training
    freeze_batchnorm_params(net.body)
    assert [p.requires_grad for m in batchnorm_layers(net) for p in m.parameters()] == [False] * 4 + [True] * 2
    assert all(p.requires_grad for p in net.body[0].parameters())
