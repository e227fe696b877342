"""The two loops that write mask files from a model: pseudo masks from a refiner and predictions
from a retrain head. The pipeline's ``pseudo_masks`` and ``eval`` stages and the ``wsss refine`` /
``wsss predict`` commands run these same functions, so a released checkpoint evaluated by a command
gives the files a run would give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..cam_ops import class_argmax
from ..data.artifacts import load_cams, read_mask_artifact
from ..data.image_io import save_mask_png
from ..errors import ConfigError
from ..inference import predict_multiscale
from ..interfaces import WSSSDataset
from ..progress import Progress
from .items import same_size_batches
from .outputs import check_head_output, check_refiner_output

__all__ = ["HeadInfer", "head_infer_settings", "write_predictions", "write_pseudo_masks"]

HeadInfer = Mapping[str, Any]
"""``head.infer``: ``scales``, ``flip``, ``aggregate``, ``crf``, ``resize_align_corners``, ``crf_backend``."""

HEAD_INFER_KEYS = ("scales", "flip", "aggregate", "crf", "resize_align_corners", "crf_backend")


def head_infer_settings(infer: Mapping[str, Any] | None) -> dict[str, Any]:
    """``head.infer`` as keywords of :func:`~wsss_kit.inference.predict_multiscale` (defaults filled)."""
    infer = dict(infer or {})
    return {"scales": tuple(float(s) for s in infer.get("scales", (1.0,))), "flip": bool(infer.get("flip", False)),
            "aggregate": str(infer.get("aggregate", "mean")), "crf": infer.get("crf"),
            "resize_align_corners": bool(infer.get("resize_align_corners", False)),
            "crf_backend": str(infer.get("crf_backend", "pydensecrf"))}


def write_pseudo_masks(refiner: Any, ds: WSSSDataset, todo: Sequence[int], out: Path, *, input_kind: str,
                       input_dir: Path, num_classes: int, palette: Any, batch_size: int, device: torch.device,
                       desc: str, stage: str) -> int:
    """Refine the CAMs or seeds of items ``todo`` of ``ds`` into ``out/<name>.png``; return how many.

    Args:
        refiner: ``refine(images (B, 3, H, W), given, labels (B, C))`` → probabilities
            ``(B, C + 1, H, W)`` or masks ``(B, H, W)``; a module is expected on ``device``.
        input_kind: ``"cams"`` (``input_dir/<name>.npz``, float ``(B, C, H, W)``) or ``"seeds"``
            (``input_dir/<name>.png``, long ``(B, H, W)``).
        batch_size: images per ``refine`` call (a batch ends where the image size changes).
        stage: names the caller in errors about the refiner's output.
    """
    if input_kind not in ("cams", "seeds"):
        raise ConfigError(f"the refiner's input must be cams or seeds, got {input_kind!r}")
    done = 0
    bar = Progress(len(todo), desc)
    for batch in same_size_batches(ds, todo, batch_size):
        images = torch.stack([s["image"] for s in batch])
        labels = torch.stack([s["labels"] for s in batch])
        if input_kind == "cams":
            given = torch.stack([load_cams(input_dir / f"{s['name']}.npz", num_classes) for s in batch])
        else:
            given = torch.stack([torch.from_numpy(read_mask_artifact(
                input_dir / f"{s['name']}.png", num_classes, (images.shape[-2], images.shape[-1]))) for s in batch])
        with torch.no_grad():
            refined = refiner.refine(images.to(device), given.to(device), labels.to(device))
        masks = check_refiner_output(refiner, refined, num_classes, (images.shape[-2], images.shape[-1]),
                                     [s["name"] for s in batch], stage=stage)
        for s, m in zip(batch, masks):
            save_mask_png(out / f"{s['name']}.png", m, palette)
        done += len(batch)
        bar.update(len(batch))
    bar.close()
    return done


def write_predictions(model: torch.nn.Module, ds: WSSSDataset, todo: Sequence[int], out: Path, *,
                      infer: Mapping[str, Any], num_outputs: int, palette: Any, device: torch.device,
                      desc: str, where: str = "head.infer") -> int:
    """Predict items ``todo`` of ``ds`` with a retrain head into ``out/<name>.png``; return how many.

    ``model(images (1, 3, H, W)) -> logits (1, K, h, w)`` in eval mode on ``device``, ``K`` =
    ``num_outputs`` (background included); ``infer`` is :func:`head_infer_settings`'s output
    (scales, flips, aggregation, CRF). Errors of ``infer`` name ``where``.
    """
    for i in Progress(len(todo), desc).wrap(todo):
        sample = ds[i]  # one read per item: its name was checked by the caller (item_names)
        image, name = sample["image"], sample["name"]
        try:
            with torch.no_grad():
                prob = predict_multiscale(model, image[None].to(device), infer["scales"], infer["flip"],
                                          aggregate=infer["aggregate"], crf=infer["crf"],
                                          resize_align_corners=infer["resize_align_corners"],
                                          crf_backend=infer["crf_backend"])
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        check_head_output(model, prob, num_outputs, tuple(image.shape[-2:]), [name])
        save_mask_png(out / f"{name}.png", class_argmax(prob)[0], palette)
    return len(todo)
