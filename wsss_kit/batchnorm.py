"""Frozen batch normalisation: one place for what the official retrains and CAM networks do.

The official codes keep some BatchNorm layers in evaluation mode (running statistics used, never
updated) and, for some, never update their affine parameters: PSA/MCTformer's ``resnet38d.Net``
sets ``requires_grad = False`` on them in ``train()``; kazuto1011's DeepLabV2 calls ``freeze_bn()``
(eval mode) and leaves them out of the optimiser; IRN/CLIMS fix the backbone's BatchNorm of their
ResNet-50. Here the affine parameters get ``requires_grad = False`` once
(:func:`freeze_batchnorm_params`), and a model's ``train()`` calls :func:`freeze_batchnorm` (or
:func:`set_batchnorm_mode`) after ``super().train(mode)``, so that ``model.train()`` never switches
them back to batch statistics.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_layers", "freeze_batchnorm", "freeze_batchnorm_params", "set_batchnorm_mode"]


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer inside ``module`` (``module`` itself included): BatchNorm1d/2d/3d,
    SyncBatchNorm and their subclasses (e.g. timm's ``BatchNormAct2d``)."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def set_batchnorm_mode(module: nn.Module, mode: bool) -> None:
    """``train(mode)`` on every batch-norm layer inside ``module``, the rest left as it is."""
    for layer in batchnorm_layers(module):
        layer.train(mode)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every batch-norm layer inside ``module`` in evaluation mode (running statistics, no
    updates); call it from a model's ``train()`` after ``super().train(mode)``."""
    set_batchnorm_mode(module, False)


def freeze_batchnorm_params(module: nn.Module) -> None:
    """``requires_grad = False`` on the affine weight and bias of every batch-norm layer."""
    for layer in batchnorm_layers(module):
        for param in layer.parameters(recurse=False):
            param.requires_grad_(False)
