"""Training-time augmentation of dataset samples (random rescale, crop, flip, colour jitter).

The random numbers come from torch's global generator, so ``torch.manual_seed`` (which the
training engine sets per worker) makes the augmentation reproducible.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ..errors import ConfigError
from ..interfaces import IGNORE_INDEX

# Photometric ranges follow the common segmentation recipe (mmseg's PhotoMetricDistortion):
# brightness ±32/255, contrast and saturation ×[0.5, 1.5], hue ±18°; each applied with p = 0.5.
BRIGHTNESS_DELTA = 32.0 / 255.0
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18.0 / 360.0


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


class TrainAugment:
    """Random rescale → photometric distortion → pad → random crop → horizontal flip.

    Called on a sample dict; ``image`` is ``float32 (3, H, W)`` in [0, 1] and every key of
    ``mask_keys`` present in the sample is an integer ``(H, W)`` tensor that gets the same
    geometry (nearest-neighbour resizing, padding with ``ignore_index``). ``labels`` and other
    keys pass through unchanged: an image-level label stays true for the crop by convention,
    even when the crop cuts the object out.

    Args:
        crop_size: output size, ``S`` or ``(H, W)``.
        scale_range: the image is resized by a factor drawn uniformly from this range.
        flip: mirror horizontally with probability 0.5.
        photometric: random brightness, contrast, saturation and hue changes (each with p = 0.5),
            applied before padding so that the padding stays 0.
        mask_keys: sample keys holding masks.
        ignore_index: value used to pad masks.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        scale_range: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        photometric: bool = True,
        mask_keys: Sequence[str] = ("mask", "target"),
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        crop: tuple[int, ...]
        if isinstance(crop_size, int):
            crop = (crop_size, crop_size)
        else:
            crop = tuple(int(c) for c in crop_size)
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"TrainAugment: crop_size must be a positive int or (H, W), got {crop_size!r}")
        lo, hi = (float(s) for s in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"TrainAugment: scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range!r}")
        self.crop_size: tuple[int, int] = (crop[0], crop[1])
        self.scale_range = (lo, hi)
        self.flip = bool(flip)
        self.photometric = bool(photometric)
        self.mask_keys = tuple(mask_keys)
        self.ignore_index = int(ignore_index)

    def __repr__(self) -> str:
        return (
            f"TrainAugment(crop_size={self.crop_size}, scale_range={self.scale_range}, flip={self.flip}, "
            f"photometric={self.photometric}, mask_keys={self.mask_keys}, ignore_index={self.ignore_index})"
        )

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        image = out["image"]
        if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] == 3):
            got = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
            raise ValueError(f"TrainAugment: sample['image'] must be a (3, H, W) tensor, got {got}")
        keys = [k for k in self.mask_keys if k in out and out[k] is not None]
        for k in keys:
            if tuple(out[k].shape) != tuple(image.shape[1:]):
                raise ValueError(
                    f"TrainAugment: sample[{k!r}] is {tuple(out[k].shape)} but the image is {tuple(image.shape[1:])}"
                )

        scale = _uniform(*self.scale_range)
        h, w = image.shape[1:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size != (h, w):
            image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
            image = image.clamp_(0.0, 1.0)
            for k in keys:
                resized = F.interpolate(out[k][None, None].float(), size=size, mode="nearest-exact")[0, 0]
                out[k] = resized.to(out[k].dtype)
        if self.photometric:
            image = photometric_distortion(image)

        ch, cw = self.crop_size
        pad_h, pad_w = max(ch - size[0], 0), max(cw - size[1], 0)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            for k in keys:
                out[k] = F.pad(out[k], (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = int(torch.randint(0, image.shape[1] - ch + 1, ()))
        left = int(torch.randint(0, image.shape[2] - cw + 1, ()))
        image = image[:, top:top + ch, left:left + cw]
        for k in keys:
            out[k] = out[k][top:top + ch, left:left + cw]

        if self.flip and float(torch.rand(())) < 0.5:
            image = image.flip(-1)
            for k in keys:
                out[k] = out[k].flip(-1)
        out["image"] = image.contiguous()
        for k in keys:
            out[k] = out[k].contiguous()
        return out


def photometric_distortion(image: torch.Tensor) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue changes of ``(3, H, W)`` in [0, 1], each with p = 0.5."""
    if float(torch.rand(())) < 0.5:
        image = (image + _uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)).clamp(0.0, 1.0)
    contrast_first = float(torch.rand(())) < 0.5
    if contrast_first and float(torch.rand(())) < 0.5:
        image = TF.adjust_contrast(image, _uniform(*CONTRAST_RANGE))
    if float(torch.rand(())) < 0.5:
        image = TF.adjust_saturation(image, _uniform(*SATURATION_RANGE))
    if float(torch.rand(())) < 0.5:
        image = TF.adjust_hue(image, _uniform(-HUE_DELTA, HUE_DELTA))
    if not contrast_first and float(torch.rand(())) < 0.5:
        image = TF.adjust_contrast(image, _uniform(*CONTRAST_RANGE))
    return image.clamp(0.0, 1.0)


def build_augment(cfg: Mapping[str, Any] | Callable[[dict], dict] | None) -> Callable[[dict], dict] | None:
    """A :class:`TrainAugment` from a config dict of its keyword arguments (``None`` → ``None``).

    A callable is returned as it is, so code can pass its own augmentation object.

    Raises:
        ConfigError: naming unknown keys (with the valid ones) or bad values.
    """
    if cfg is None:
        return None
    if callable(cfg) and not isinstance(cfg, Mapping):
        return cfg
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"augment must be a dict of TrainAugment arguments or null, got {type(cfg).__name__}")
    valid = [p for p in inspect.signature(TrainAugment.__init__).parameters if p != "self"]
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ConfigError(f"augment: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
    if "crop_size" not in cfg:
        raise ConfigError("augment: 'crop_size' is required (an int or [H, W])")
    try:
        return TrainAugment(**cfg)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"augment: {exc}") from None
