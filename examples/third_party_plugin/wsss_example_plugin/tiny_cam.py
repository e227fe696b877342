"""A deliberately small CAM generator: three conv blocks, global average pooling, 1x1 classifier."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_kit.cam_ops import multiscale_cams


class TinyCAM(wsss_kit.CAMGenerator):
    """CAMs from a 3-block CNN (output stride 8), for examples and tests.

    Args:
        num_classes: number of foreground classes ``C``.
        width: channels of the first block (doubled per block).
    """

    wsss_api_version = "1.0"  # the wsss_kit interface version this plugin was written for

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        blocks, cin = [], 3
        for i in range(3):
            cout = width * 2**i
            blocks += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(cin, num_classes, 1, bias=False)

    def raw_cams(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised class maps ``(B, C, H/8, W/8)`` for images ``(B, 3, H, W)`` in [0, 1]."""
        return self.classifier(self.features(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.raw_cams(images).mean(dim=(2, 3))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.multilabel_soft_margin_loss(logits, labels)
        return out

    def cams(self, images: torch.Tensor, labels: torch.Tensor, scales: Sequence[float] = (1.0,),
             flip: bool = False) -> torch.Tensor:
        return multiscale_cams(self.raw_cams, images, labels, scales=scales, flip=flip)
