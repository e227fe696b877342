"""The residual stages of a timm ResNet, and running a stage without its stride.

timm reaches ``output_stride`` 16 or 8 the DeepLab way: the stages whose stride it drops are
*dilated* (``layer4`` with dilation 2 at output stride 16). IRN's ResNet-50, which CLIMS and
POLE use as their CAM network, drops ``layer4``'s stride and keeps dilation 1 (its
``strides=(2, 2, 2, 1)``), a different network with a smaller receptive field. The same
weights fit both. :func:`remove_stage_stride` turns a stage of a model built at output stride
32 into the IRN form: the first block's strided convolutions get stride 1 and a strided
average-pool shortcut (timm's ``avg_down`` ResNets) becomes the identity, as timm builds it
for stride 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

__all__ = ["remove_stage_stride", "resnet_stages"]

STAGE_NAME = re.compile(r"^layer(\d+)$")
"""Top-level module names of the residual stages in timm (and torchvision) ResNets."""


def resnet_stages(backbone: nn.Module) -> list[tuple[str, nn.Sequential]]:
    """The residual stages ``[("layer1", module), ...]`` of a timm ResNet, in order; empty for other nets."""
    found = [(int(m.group(1)), name, module) for name, module in backbone.named_children()
             if (m := STAGE_NAME.match(name)) and isinstance(module, nn.Sequential) and len(module) > 0]
    return [(name, module) for _, name, module in sorted(found, key=lambda item: item[0])]


def remove_stage_stride(stage: nn.Sequential, name: str = "stage") -> None:
    """Make ``stage`` keep its input's resolution without dilating it (in place).

    Only the first block of a ResNet stage is strided. Its strided ``Conv2d`` layers get stride
    1 (their padding already suits stride 1 for the odd kernels ResNets use) and strided
    ``AvgPool2d``/``MaxPool2d`` layers (the ``avg_down`` shortcut) become ``nn.Identity``. The
    parameters are unchanged, so weights load before or after.

    Raises:
        ValueError: the block holds another strided layer (e.g. an anti-aliasing blur pool), a
            dilated strided convolution, a padding that would change the output size at stride 1,
            or no strided layer at all; the message names the layer.
    """
    block = stage[0]
    changed = False
    for sub_name, module in list(block.named_modules()):
        where = f"{name}.0.{sub_name}" if sub_name else f"{name}.0"
        if sub_name == "":
            if isinstance(getattr(module, "stride", None), int):
                module.stride = 1  # timm's blocks record their stride; the forward does not read it
            continue
        if isinstance(module, nn.Conv2d):
            if tuple(module.stride) == (1, 1):
                continue
            if tuple(module.dilation) != (1, 1):
                raise ValueError(f"{where} is a strided convolution with dilation {tuple(module.dilation)}; "
                                 f"cannot remove its stride without changing the network")
            if not isinstance(module.padding, str):
                same = tuple(d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation))
                if tuple(module.padding) != same or any(k % 2 == 0 for k in module.kernel_size):
                    raise ValueError(
                        f"{where} (kernel {tuple(module.kernel_size)}, padding {tuple(module.padding)}) would "
                        f"not keep the feature size at stride 1; pass dilate_last_stage=True")
            module.stride = (1, 1)
            changed = True
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            if _stride_is_one(module.stride):
                continue
            _replace(block, sub_name, nn.Identity())
            changed = True
        elif not _stride_is_one(getattr(module, "stride", 1)):
            raise ValueError(
                f"{where} ({type(module).__name__}) is strided and is neither a convolution nor a "
                f"pooling shortcut; removing the stride of this backbone without dilation is not "
                f"supported: pass dilate_last_stage=True")
    if not changed:
        raise ValueError(f"{name} has no strided layer in its first block; nothing to remove")


def _stride_is_one(stride: int | Iterable[int] | None) -> bool:
    if stride is None:
        return True
    if isinstance(stride, int):
        return stride == 1
    return all(s == 1 for s in stride)


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
