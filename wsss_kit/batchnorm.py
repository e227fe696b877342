"""Frozen batch normalisation, as the official DeepLab / ResNet38 retrains use it.

Both official retrains keep every BatchNorm layer in evaluation mode (running statistics are
used and never updated) and never update its affine parameters: PSA/MCTformer's ``resnet38d.Net``
sets ``requires_grad = False`` on them in ``train()``; kazuto1011's DeepLabV2 calls
``freeze_bn()`` (eval mode) and leaves them out of the optimiser. Here both are done: the affine
parameters get ``requires_grad = False`` once, and :func:`bn_eval` is called from the model's
``train()`` so that ``model.train()`` never switches them back to batch statistics.
"""

from __future__ import annotations

from torch import nn

__all__ = ["batchnorm_layers", "bn_eval", "freeze_bn_params"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """Every batch-norm layer inside ``module`` (``module`` itself included)."""
    return [m for m in module.modules() if isinstance(m, _BN_TYPES)]


def freeze_bn_params(module: nn.Module) -> None:
    """``requires_grad = False`` on the affine weight and bias of every batch-norm layer."""
    for layer in batchnorm_layers(module):
        for param in layer.parameters(recurse=False):
            param.requires_grad_(False)


def bn_eval(module: nn.Module) -> None:
    """Put every batch-norm layer in evaluation mode (running statistics, no updates)."""
    for layer in batchnorm_layers(module):
        layer.eval()
