"""Implementations of the ``wsss`` sub-commands (imported only when a command runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

from ..config import build, is_node, load_config
from ..errors import ConfigError, DataError
from ..registry import KINDS, check_kind, list_plugins


def plugins(kind: str | None, load: bool = True) -> int:
    """Print every plugin grouped by kind: name, distribution, version, status.

    Each kind is printed as soon as its plugins are imported; a plugin that fails (any exception,
    ``sys.exit`` included) or whose import outlasts ``WSSS_KIT_PLUGIN_IMPORT_TIMEOUT`` shows as
    broken with the reason, among the others. Disabled plugins (``WSSS_KIT_DISABLE_PLUGINS``) and
    third-party plugins that reuse a first-party name are marked.
    """
    import sys

    from ..registry import DISABLE_ENV, default_registry, disable_rules

    registry = default_registry()
    kinds = KINDS if kind is None else (check_kind(kind),)
    for k in kinds:
        rows = registry.list(k, load=load)
        print(f"{k} (entry-point group wsss_kit.{k}):")
        if not rows:
            print("  (none installed)")
        width = max([len(i.name) for i in rows] + [4])
        for info in rows:
            status = "" if info.status == "ok" else f"  [{info.status}]"
            print(f"  {info.name:<{width}}  {info.dist} {info.version}  ({info.target}){status}")
            if info.status in ("broken", "disabled"):
                print(f"  {'':<{width}}  reason: {info.error}")
            first = registry.shadowed_by(info)
            if first is not None:
                print(f"  {'':<{width}}  note: the bare name {info.name!r} selects the first-party "
                      f"{first.qualified_name!r}; name this one {info.qualified_name!r}")
        sys.stdout.flush()
    installed = list_plugins()
    unmatched = [r.text for r in disable_rules() if not any(r.matches(i) for i in installed)]
    if unmatched:
        print(f"note: {DISABLE_ENV} entr{'y' if len(unmatched) == 1 else 'ies'} "
              f"{', '.join(map(repr, unmatched))} match{'es' if len(unmatched) == 1 else ''} no installed plugin")
    return 0


def run(config: str, args: argparse.Namespace, stages: Sequence[str] | None = None,
        restart: str | None = None) -> int:
    from .run_config import run_config

    cfg = load_config(config, args.overrides)
    return run_config(cfg, args, source=config, stages=stages, restart=restart)


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


_BACKGROUND_NAMES = ("background", "bg", "bkg")


def _class_names(spec: str) -> tuple[str, ...]:
    """Foreground class names from ``--classes``: ``voc``, ``coco``, a file (one name a line, or a
    ``.json`` list of names) or names separated by commas; a leading ``background`` is dropped.

    Raises:
        ConfigError: an empty list, a repeated name, or a value that looks like a file path
            (contains a path separator or ends in ``.txt``, ``.json``, ``.csv`` or ``.names``) but is
            not a readable UTF-8 file (a ``.json`` one: not a list of names).
    """
    from ..data.palette import COCO_CLASSES, VOC_CLASSES

    if spec == "voc":
        return tuple(VOC_CLASSES)
    if spec == "coco":
        return tuple(COCO_CLASSES)
    path = Path(spec).expanduser()
    looks_like_path = "/" in spec or os.sep in spec or spec.lower().endswith((".txt", ".json", ".csv", ".names"))
    if path.is_file() or looks_like_path:
        if not path.exists():
            raise ConfigError(f"--classes {spec!r} looks like a file of class names, but {path} does not exist; "
                              f"give an existing file (one name per line), 'voc', 'coco' or names separated by commas")
        if not path.is_file():
            raise ConfigError(f"--classes {spec!r}: {path} is not a file (expected one class name per line)")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--classes {spec!r}: {path} is not UTF-8 text (byte offset {exc.start}); "
                              f"save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"--classes {spec!r}: {path} cannot be read: {exc.strerror or exc}") from None
        where = f"--classes file {path}"
        names = _json_names(text, where) if path.suffix.lower() == ".json" else \
            [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        where = "--classes"
    if not names:
        raise ConfigError(f"--classes {spec!r}: expected 'voc', 'coco', names separated by commas, or a file")
    if names[0].lower() in _BACKGROUND_NAMES:
        names = names[1:]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    dupes = [n for n, count in seen.items() if count > 1]
    if dupes:
        raise ConfigError(f"{where}: class names must be distinct, but {', '.join(map(repr, dupes))} "
                          f"appear{'s' if len(dupes) == 1 else ''} more than once")
    if not names:
        raise ConfigError(f"{where}: no foreground class names after 'background'")
    return tuple(names)


def _json_names(text: str, where: str) -> list[str]:
    """The class names of a ``.json`` file: a list of strings."""
    import json

    try:
        names = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno}); expected a list of "
                          f"class names, e.g. [\"cat\", \"dog\"]") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        got = "a list with non-string items" if isinstance(names, list) else f"a JSON {type(names).__name__}"
        raise ConfigError(f"{where} holds {got}; expected a list of class names, e.g. [\"cat\", \"dog\"]")
    return [n.strip() for n in names if n.strip()]


def _describe_classes(spec: str, names: Sequence[str]) -> str:
    shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:10]) + f", ... {names[-1]}"
    return f"--classes {spec} ({len(names)} foreground classes: {shown})"


def _read_eval_mask(path: Path, what: str, names: Sequence[str], spec: str,
                    expected_size: tuple[int, int] | None = None) -> Any:
    """A ground-truth or predicted mask, checked against the class list in use."""
    import numpy as np

    from ..data.image_io import read_mask_raw
    from ..interfaces import IGNORE_INDEX

    mask = read_mask_raw(path)  # DataError naming the file when it is missing, corrupt or not an index PNG
    if expected_size is not None and tuple(mask.shape) != tuple(expected_size):
        raise DataError(f"{what} {path} is {mask.shape[0]}x{mask.shape[1]} but the ground truth is "
                        f"{expected_size[0]}x{expected_size[1]}")
    values = np.unique(mask)
    bad = values[((values < 0) | (values > len(names))) & (values != IGNORE_INDEX)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise DataError(
            f"{what} {path} holds class value(s) {shown}, but {_describe_classes(spec, names)} allows only "
            f"0..{len(names)} and {IGNORE_INDEX} (ignore); pass --classes with the names of this data's classes"
        )
    return mask


def evaluate(args: argparse.Namespace) -> int:
    """``wsss eval --pred DIR --gt DIR``: confusion-matrix mIoU and the per-class table.

    Every mask is checked against the class list in use (``--classes``; VOC's 20 names with a
    warning when it is not given): a value above it, a repeated name, a prediction leaving a
    labelled pixel unclassified (255) or an unreadable PNG is an error naming the file.
    """
    import sys

    import torch

    from ..interfaces import IGNORE_INDEX
    from ..metrics import ConfusionMatrix, format_iou_table
    from ..progress import Progress

    spec = args.classes
    if spec is None:
        spec = "voc"
        print("wsss eval: warning: --classes not given, so the table uses the 20 PASCAL VOC class names; "
              "pass --classes (coco, a file, or names separated by commas) for other data", file=sys.stderr)
    names = _class_names(spec)
    pred_dir, gt_dir = Path(args.pred), Path(args.gt)
    for d, flag in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not d.is_dir():
            raise DataError(f"{flag} folder {d} does not exist" if not d.exists() else f"{flag} {d} is not a folder")
    gts = sorted(gt_dir.glob("*.png"))
    if not gts:
        raise DataError(f"--gt folder {gt_dir} holds no .png masks")
    missing = [p.name for p in gts if not (pred_dir / p.name).exists()]
    if missing and not args.allow_missing:
        raise DataError(f"{len(missing)} of {len(gts)} ground-truth masks have no prediction in {pred_dir}, "
                        f"e.g. {', '.join(missing[:5])} (pass --allow-missing to score the rest)")
    cm = ConfusionMatrix(len(names) + 1)
    scored = 0
    for gt_path in Progress(len(gts), "eval").wrap(gts):
        pred_path = pred_dir / gt_path.name
        if not pred_path.exists():
            continue
        gt = _read_eval_mask(gt_path, "ground-truth mask", names, spec)
        pred = _read_eval_mask(pred_path, "prediction", names, spec, expected_size=tuple(gt.shape))
        unclassified = int(((pred == IGNORE_INDEX) & (gt != IGNORE_INDEX)).sum())
        if unclassified:
            raise DataError(
                f"prediction {pred_path} leaves {unclassified} pixel(s) at {IGNORE_INDEX} (ignore) where "
                f"{gt_path} has a class; a prediction must give every labelled pixel a class 0..{len(names)}"
            )
        cm.update(torch.as_tensor(pred)[None], torch.as_tensor(gt)[None])
        scored += 1
    result = cm.compute()
    print(format_iou_table({str(pred_dir): result["iou"]}, ("background",) + names, fmt=args.format))
    print(f"mIoU {100 * float(result['miou']):.2f} over {scored} images")
    return 0


def check_data(args: argparse.Namespace) -> int:
    """``wsss check-data CONFIG``: every problem of every dataset node, in one pass.

    Exits 1 when any error was found, 0 when there were none or only notes (e.g. a greyscale image
    that will be converted). Images over ``$WSSS_KIT_MAX_IMAGE_PIXELS`` (default 40 Mpx) are errors,
    as they would be when a run reads them.
    """
    from ..config import get_path
    from ..data.checks import check_dataset, format_problems

    cfg = load_config(args.config, args.overrides)
    keys = args.key or [f"data.{k}" for k, v in (cfg.get("data") or {}).items() if is_node(v)]
    if not keys:
        raise ConfigError(f"{args.config}: no dataset nodes under 'data' (expected e.g. data.train: "
                          "{type: datasets/voc2012, root: ...})")
    errors = 0
    for key in keys:
        node = get_path(cfg, key, source=args.config)
        if not is_node(node):
            raise ConfigError(f"{args.config}: {key} is not a dataset node")
        dataset = build(node, key)
        problems = check_dataset(dataset)
        errors += sum(not p.is_note for p in problems)
        print(f"{key}: {dataset.describe()}")
        print(format_problems(problems) if problems else "  no problems found")
    return 1 if errors else 0
