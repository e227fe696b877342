"""Retrain heads built from segmentation_models_pytorch (DeepLabV3+, U-Net, FPN, ...).

The final WSSS stage trains a fully supervised segmentation network on the pseudo masks; smp
offers a dozen architectures over hundreds of encoders. This wrapper gives them the wsss_kit
contract: images in [0, 1] (ImageNet normalisation inside), any input size (padded to the
encoder's stride and cropped back), logits at the input size, and learning-rate groups.
"""

from __future__ import annotations

import difflib
import inspect
import os
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_kit.shapes import check_shape
from wsss_kit.weights import load_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESERVED_KWARGS = {
    "classes": "set by num_classes",
    "in_channels": "the head takes RGB images",
    "activation": "the head returns logits; losses apply softmax themselves",
    "aux_params": "the head returns segmentation logits only",
}


def architectures() -> dict[str, type]:
    """smp architecture names (as spelt by smp's classes, e.g. ``"DeepLabV3Plus"``) → class."""
    return {cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}


class SMPHead(wsss_kit.RetrainHead):
    """A segmentation_models_pytorch network as a wsss_kit retrain head.

    Args:
        num_classes: ``K``, classes *including* background (21 for VOC).
        arch: smp architecture, case-insensitive (``"DeepLabV3Plus"``, ``"Unet"``, ``"FPN"``...).
        encoder_name: an smp encoder (``"resnet18"``, ``"resnet101"``...) or ``"tu-<timm model>"``.
        encoder_weights: ``None`` (random init, the default: nothing is downloaded); one of smp's
            tags for the encoder (``"imagenet"``..., which smp downloads); or a local weights spec
            understood by :func:`wsss_kit.weights.resolve` (a file path, ``released:...``), loaded
            into the encoder with the classifier keys skipped.
        encoder_depth: number of encoder stages (3..5) smp uses.
        decoder_lr_mult: learning-rate multiplier of everything but the encoder in :meth:`param_groups`.
        **smp_kwargs: further keywords of the smp architecture (``decoder_channels``,
            ``encoder_output_stride``...); unknown ones raise ``TypeError`` listing the valid ones.

    ``forward(images (B, 3, H, W) in [0, 1]) -> logits (B, K, H, W)`` for any ``H, W``.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    wsss_api_version = "1.0"
    checkpoint_replaces = ("encoder_weights",)
    """A trained checkpoint holds the encoder: ``encoder_weights`` (an smp tag or file) is then not needed."""

    def __init__(
        self,
        num_classes: int,
        arch: str = "DeepLabV3Plus",
        encoder_name: str = "resnet18",
        encoder_weights: str | os.PathLike[str] | None = None,
        encoder_depth: int = 5,
        decoder_lr_mult: float = 10.0,
        **smp_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 (K = foreground classes + background); got {num_classes!r}"
            )
        if not decoder_lr_mult > 0:
            raise ValueError(f"decoder_lr_mult must be positive; got {decoder_lr_mult!r}")
        arch_cls = _check_arch(arch)
        _check_encoder(encoder_name)
        _check_smp_kwargs(arch_cls, smp_kwargs)

        self.num_classes = num_classes
        self.arch = arch_cls.__name__
        self.encoder_name = encoder_name
        self.decoder_lr_mult = float(decoder_lr_mult)

        smp_tag, local_weights = _split_weights(encoder_name, encoder_weights)
        try:
            self.model = arch_cls(
                encoder_name=encoder_name,
                encoder_weights=smp_tag,
                encoder_depth=encoder_depth,
                in_channels=3,
                classes=num_classes,
                **smp_kwargs,
            )
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            raise ValueError(
                f"smp could not build {self.arch} with encoder {encoder_name!r}, encoder_depth="
                f"{encoder_depth} and {smp_kwargs or 'no further keywords'}: {exc}"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - a failed weight download
            if smp_tag is None:
                raise
            raise wsss_kit.WeightsError(
                f"encoder weights {smp_tag!r} for {encoder_name!r} could not be loaded by smp "
                f"({type(exc).__name__}: {exc}); with no network pass encoder_weights=None or a local "
                f"weights file"
            ) from exc
        if local_weights is not None:
            load_checkpoint(self.model.encoder, local_weights, purpose=f"encoder weights for {encoder_name!r}",
                            ignore_unexpected=True, hint="smp's own tags go in encoder_weights= by name")

        stride = getattr(self.model.encoder, "output_stride", None)
        self.size_multiple = int(stride) if stride else 2**encoder_depth
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for images ``(B, 3, H, W)`` RGB in [0, 1].

        The normalised images are zero-padded (i.e. with the ImageNet mean colour) on the bottom
        and right to a multiple of the encoder's stride, and the logits cropped back.
        """
        check_shape(images, "B 3 H W", "images", note="RGB in [0, 1]")
        height, width = images.shape[-2:]
        x = (images - self.mean) / self.std
        m = self.size_multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        logits = self.model(x)
        # some smp configurations (e.g. FPN or PSPNet at a non-default depth) return another scale
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups: encoder at ``lr`` (``lr_mult`` 1), decoder and head at
        ``lr * decoder_lr_mult``; each group carries its ``lr_mult`` for schedulers."""
        encoder_ids = {id(p) for p in self.model.encoder.parameters()}
        encoder = [p for p in self.model.encoder.parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in encoder_ids]
        return [
            {"params": encoder, "lr": lr, "lr_mult": 1.0},
            {"params": rest, "lr": lr * self.decoder_lr_mult, "lr_mult": self.decoder_lr_mult},
        ]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, arch={self.arch!r}, encoder_name={self.encoder_name!r}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _check_arch(arch: str) -> type:
    archs = architectures()
    by_lower = {name.lower(): cls for name, cls in archs.items()}
    if isinstance(arch, str) and arch.lower() in by_lower:
        return by_lower[arch.lower()]
    raise ValueError(
        f"unknown smp arch {arch!r}; available: {', '.join(archs)}{_did_you_mean(str(arch), list(archs))}"
    )


def _check_encoder(name: str) -> None:
    known = list(smp.encoders.get_encoder_names())
    if isinstance(name, str) and (name in known or (name.startswith("tu-") and timm.is_model(name[3:]))):
        return
    hint = _did_you_mean(str(name), known)
    if isinstance(name, str) and name.startswith("tu-"):
        hint = _did_you_mean(name[3:], timm.list_models()) or hint
    raise ValueError(
        f"unknown smp encoder_name {name!r}; available: {', '.join(known)}, or 'tu-<name>' for any timm "
        f"model (timm.list_models()){hint}"
    )


def _check_smp_kwargs(arch_cls: type, kwargs: dict[str, Any]) -> None:
    for key, why in RESERVED_KWARGS.items():
        if key in kwargs:
            raise TypeError(f"smp keyword {key!r} cannot be passed to SMPHead: {why}")
    params = inspect.signature(arch_cls).parameters
    valid = sorted(
        n for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in RESERVED_KWARGS and n not in ("encoder_name", "encoder_weights", "encoder_depth")
    )
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"smp {arch_cls.__name__} got unexpected keyword{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; valid keywords: {', '.join(valid)}"
            + "".join(_did_you_mean(u, valid) for u in unknown)
        )


def _split_weights(
    encoder_name: str, weights: str | os.PathLike[str] | None
) -> tuple[str | None, str | os.PathLike[str] | None]:
    """``(tag smp loads itself, local spec wsss_kit loads)``; at most one is not None."""
    if weights is None:
        return None, None
    if isinstance(weights, str):
        if encoder_name.startswith("tu-"):
            smp_tags = {"imagenet"}
        else:
            smp_tags = set(smp.encoders.encoders[encoder_name].get("pretrained_settings", {}))
        if weights in smp_tags:
            return weights, None
    return None, weights
