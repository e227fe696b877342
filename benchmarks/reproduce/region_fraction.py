"""The fraction of a background region that a run's masks label as a class (a row's
:class:`~benchmarks.tables.schema.RegionFraction` value).

CLIMS's claim is that its CAMs fire less on a class's co-occurring background (boats on water). In
the synthetic world every scene knows its water pixels (:attr:`wsss_kit.data.synthetic_scene.Scene.water`,
background in the mask), so the false activation is measurable: over the images that contain class
``c``, the water pixels the seeds label ``c``, divided by all their water pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from wsss_kit.config import build, get_path, is_node
from wsss_kit.data.image_io import read_mask
from wsss_kit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..tables.schema import RegionFraction

__all__ = ["measure_region_fraction", "region_label_fraction"]


def region_label_fraction(items: Iterable[tuple[np.ndarray, np.ndarray]], label: int) -> float | None:
    """Pixels of the regions labelled ``label``, over all the regions' pixels.

    Args:
        items: ``(mask, region)`` pairs, one per image: ``mask`` int ``(H, W)`` (0 background,
            1..C classes, 255 ignored), ``region`` bool ``(H, W)`` of the same size. Give only the
            images that contain class ``label``.
        label: the mask value of the class (1..C).

    Returns:
        the fraction in [0, 1], pooled over images (each pixel counts once); ``None`` when the
        regions hold no pixel.

    Raises:
        ValueError: a mask and its region differ in size.
    """
    hit = total = 0
    for i, (mask, region) in enumerate(items):
        mask, region = np.asarray(mask), np.asarray(region, dtype=bool)
        if mask.shape != region.shape:
            raise ValueError(f"item {i}: mask is {mask.shape} but its region is {region.shape}; expected the same size")
        hit += int((mask[region] == label).sum())
        total += int(region.sum())
    return hit / total if total else None


def measure_region_fraction(spec: "RegionFraction", cfg: Mapping[str, Any], run_dir: Path) -> float | None:
    """``spec`` measured on a run: its masks under ``run_dir / spec.masks`` against the scenes of
    its ``data.<spec.split>`` (a synthetic dataset, whose scenes know their regions).

    Raises:
        ConfigError: the dataset is not synthetic (no scenes), the region or the class is unknown.
        DataError: a mask of an image of the class is missing.
    """
    node = get_path(cfg, f"data.{spec.split}", None)
    if not is_node(node):
        raise ConfigError(f"{spec}: the run has no data.{spec.split} dataset")
    dataset = build(dict(node), f"data.{spec.split}")
    if not hasattr(dataset, "scene"):
        raise ConfigError(f"{spec}: data.{spec.split} ({node['type']}) has no scenes to read region "
                          f"{spec.region!r} from; expected datasets/synthetic")
    names = tuple(dataset.class_names)
    if spec.label not in names:
        raise ConfigError(f"{spec}: class {spec.label!r} is not one of the dataset's classes {names}")
    label = names.index(spec.label) + 1
    folder = run_dir / spec.masks

    def items() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for index, name in enumerate(dataset.names):
            scene = dataset.scene(index)
            if label not in scene.classes:
                continue
            region = getattr(scene, spec.region, None)
            if region is None:
                if not hasattr(scene, spec.region):
                    raise ConfigError(f"{spec}: scenes have no region {spec.region!r}")
                continue  # a scene without that region (no water band)
            path = folder / f"{name}.png"
            if not path.exists():
                raise DataError(f"{spec}: mask {path} does not exist (did the run write {spec.masks}?)")
            yield read_mask(path, len(names), expected_size=region.shape), region

    return region_label_fraction(items(), label)
