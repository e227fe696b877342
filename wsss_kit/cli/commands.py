"""Implementations of the ``wsss`` sub-commands (imported only when a command runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Sequence

from ..config import apply_overrides, build, is_node, load_config, parse_config
from ..errors import ConfigError, DataError
from ..registry import KINDS, check_kind, list_plugins


def plugins(kind: str | None, load: bool = True) -> int:
    """Print every plugin grouped by kind: name, distribution, version, status."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    infos = list_plugins(kind, load=load)
    for k in kinds:
        rows = [i for i in infos if i.kind == k]
        print(f"{k} (entry-point group wsss_kit.{k}):")
        if not rows:
            print("  (none installed)")
        width = max([len(i.name) for i in rows] + [4])
        for info in rows:
            status = "" if info.status == "ok" else f"  [{info.status}]"
            print(f"  {info.name:<{width}}  {info.dist} {info.version}  ({info.target}){status}")
            if info.status == "broken":
                print(f"  {'':<{width}}  reason: {info.error}")
    return 0


def _print_run_summary(stages: dict[str, Any], run_dir: Path, seconds: float, refiner: str) -> None:
    from ..pipeline.runner import format_report

    if all(s.get("complete") for s in stages.values()) and "eval" in stages:
        print()
        print(format_report(stages, refiner))
        print(f"\nrun directory: {run_dir}  (results.md, pictures/, config.resolved.yaml, provenance.json)")
    print(f"wall time: {seconds:.0f} s")


def _run_config(cfg: dict[str, Any], args: argparse.Namespace, source: str,
                stages: Sequence[str] | None = None, restart: str | None = None) -> int:
    from ..pipeline import Shard, run_pipeline
    from ..pipeline.runner import refiner_name

    start = time.perf_counter()
    run_dir = Path(args.out or cfg.get("run_dir") or "runs/default")
    result = run_pipeline(cfg, run_dir, stages=stages, restart=restart, shard=Shard.parse(args.shard),
                          source=source)
    _print_run_summary(result, run_dir, time.perf_counter() - start, refiner_name(cfg))
    return 0


def run(config: str, args: argparse.Namespace, stages: Sequence[str] | None = None,
        restart: str | None = None) -> int:
    cfg = load_config(config, args.overrides)
    return _run_config(cfg, args, source=config, stages=stages, restart=restart)


def demo(args: argparse.Namespace) -> int:
    from .main import demo_config_path

    path = demo_config_path()
    if args.print_config:
        print(path.read_text(encoding="utf-8"))
        return 0
    cfg = apply_overrides(parse_config(path.read_text(encoding="utf-8"), source="demo.yaml"), args.overrides)
    print("wsss demo: CAM training -> CAMs/seeds -> dense CRF pseudo masks -> retrained head -> evaluation")
    return _run_config(cfg, args, source="demo.yaml", restart=args.restart)


def _class_names(spec: str) -> tuple[str, ...]:
    from ..data.palette import COCO_CLASSES, VOC_CLASSES

    if spec == "voc":
        return tuple(VOC_CLASSES)
    if spec == "coco":
        return tuple(COCO_CLASSES)
    path = Path(spec)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--classes {spec!r}: expected 'voc', 'coco', names separated by commas, or a file")
    if names[0].lower() in ("background", "bg", "bkg"):
        names = names[1:]
    return tuple(names)


def evaluate(args: argparse.Namespace) -> int:
    """``wsss eval --pred DIR --gt DIR``: confusion-matrix mIoU and the per-class table."""
    import torch
    from tqdm.auto import tqdm

    from ..data.image_io import read_mask
    from ..metrics import ConfusionMatrix, format_iou_table

    names = _class_names(args.classes)
    pred_dir, gt_dir = Path(args.pred), Path(args.gt)
    for d, flag in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not d.is_dir():
            raise DataError(f"{flag} folder {d} does not exist")
    gts = sorted(gt_dir.glob("*.png"))
    if not gts:
        raise DataError(f"--gt folder {gt_dir} holds no .png masks")
    missing = [p.name for p in gts if not (pred_dir / p.name).exists()]
    if missing and not args.allow_missing:
        raise DataError(f"{len(missing)} of {len(gts)} ground-truth masks have no prediction in {pred_dir}, "
                        f"e.g. {', '.join(missing[:5])} (pass --allow-missing to score the rest)")
    cm = ConfusionMatrix(len(names) + 1)
    scored = 0
    for gt_path in tqdm(gts, desc="eval", unit="img"):
        pred_path = pred_dir / gt_path.name
        if not pred_path.exists():
            continue
        gt = read_mask(gt_path, len(names))
        pred = read_mask(pred_path, len(names), expected_size=tuple(gt.shape))
        cm.update(torch.as_tensor(pred)[None], torch.as_tensor(gt)[None])
        scored += 1
    result = cm.compute()
    print(format_iou_table({str(pred_dir): result["iou"]}, ("background",) + names, fmt=args.format))
    print(f"mIoU {100 * float(result['miou']):.2f} over {scored} images")
    return 0


def check_data(args: argparse.Namespace) -> int:
    """``wsss check-data CONFIG``: every problem of every dataset node, in one pass."""
    from ..config import get_path
    from ..data.checks import check_dataset, format_problems

    cfg = load_config(args.config, args.overrides)
    keys = args.key or [f"data.{k}" for k, v in (cfg.get("data") or {}).items() if is_node(v)]
    if not keys:
        raise ConfigError(f"{args.config}: no dataset nodes under 'data' (expected e.g. data.train: "
                          "{type: datasets/voc2012, root: ...})")
    total = 0
    for key in keys:
        node = get_path(cfg, key, source=args.config)
        if not is_node(node):
            raise ConfigError(f"{args.config}: {key} is not a dataset node")
        dataset = build(node, key)
        problems = check_dataset(dataset)
        total += len(problems)
        print(f"{key}: {dataset.describe()}")
        print(format_problems(problems) if problems else "  no problems found")
    return 1 if total else 0
