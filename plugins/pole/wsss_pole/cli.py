"""``wsss-pole-select CONFIG --cams DIR``: POLE's synonym selection for one split of a run config.

Builds ``data.<split>`` of a wsss run config, loads CLIP (POLE: ViT-B/32 with OpenAI's weights),
selects for every image and every class in its label the best of ``[class word] + synonyms``
from the baseline CAMs in ``DIR`` (``<name>.npz`` as ``wsss cam`` and the pipeline's ``cams``
stage write them, e.g. ``<baseline run_dir>/cams/train``), and writes the selection cache that
``cams/pole`` reads (:meth:`wsss_pole.synonyms.PoleSynonyms.select_dataset`). The cache is
saved every ``--save-every`` images, so an interrupted run resumes; a complete cache is reused.
Then it prints how often each candidate was chosen per class (POLE's Fig. 4 as a table).

Where the config's ``cam.model`` is a ``cams/pole`` node, its ``synonyms``, ``selection_cache``,
``clip_model`` and ``clip_weights`` are the defaults, so one config serves both steps::

    wsss cam baseline.yaml --split train              # baseline CAMs: <baseline run_dir>/cams/train
    wsss-pole-select pole.yaml --cams <baseline run_dir>/cams/train
    wsss run pole.yaml                                 # trains cams/pole with the selections
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_kit.config import build, get_path, is_node, load_config, split_type
from wsss_kit.errors import ConfigError, WSSSError

from .pole import SELECT_COMMAND, build_synonyms
from .synonyms import PoleSynonyms

__all__ = ["build_parser", "frequency_table", "main", "run"]

DEFAULT_CLIP = "ViT-B-32"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=SELECT_COMMAND,
        description="POLE's synonym selection: for every image of data.<split> and every class in its label, "
                    "the word among [class word + synonyms] whose prompt CLIP finds closest to the image masked "
                    "by the baseline CAM. Writes the selection cache that cams/pole trains with; resumes an "
                    "interrupted run.")
    p.add_argument("config", help="a wsss run config (data.<split>; cam.model: cams/pole gives the defaults)")
    p.add_argument("--cams", required=True, metavar="DIR",
                   help="folder of baseline CAM files <name>.npz (`wsss cam BASELINE.yaml --split train` writes "
                        "<run_dir>/cams/train)")
    p.add_argument("--split", default="train", help="which data.<split> (default: train)")
    p.add_argument("--out", metavar="CACHE.json",
                   help="the selection cache (default: cam.model.selection_cache, else "
                        "<run_dir>/pole_selection_<split>.json)")
    p.add_argument("--clip", metavar="ARCH",
                   help=f"CLIP architecture (default: cam.model.clip_model, else {DEFAULT_CLIP})")
    p.add_argument("--clip-weights", metavar="WEIGHTS",
                   help="CLIP weights: a file, released:<name>, open_clip:<tag>, 'default' (OpenAI's for "
                        "ViT-B-32/16, e.g. released:clip_vit_b32_openai) or 'none' (random; tests) (default: "
                        "cam.model.clip_weights, else 'default')")
    p.add_argument("--synonyms", metavar="TABLE",
                   help="synonym table: 'voc' (Table S1) or a file (default: cam.model.synonyms, else voc)")
    p.add_argument("--num-synonyms", type=int, metavar="M", help="keep the first M synonyms of each class")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per step and masked images per "
                   "CLIP pass (default: 32)")
    p.add_argument("--num-workers", type=int, default=0, metavar="N", help="DataLoader workers (default: 0)")
    p.add_argument("--save-every", type=int, default=1000, metavar="N",
                   help="write the partial cache every N new images (default: 1000)")
    p.add_argument("--device", help="torch device (default: the config's device, 'auto': CUDA when available)")
    p.add_argument("--rebuild", action="store_true", help="ignore an existing cache and select again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.train.max_images=100 (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``wsss-pole-select`` and ``python -m wsss_pole.cli``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except WSSSError as exc:
        print(f"{SELECT_COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{SELECT_COMMAND}: interrupted; rerun the same command to resume from the saved cache",
              file=sys.stderr)
        return 130
    return 0


def run(args: argparse.Namespace) -> dict[str, dict[int, str]]:
    """Do what :func:`main` does with parsed arguments; returns image id → {class index → word}."""
    from wsss_kit.clip import load_clip

    from .clims import DEFAULT_CLIP_WEIGHTS

    cfg = load_config(args.config, args.overrides)
    source, split = args.config, args.split
    where = f"data.{split}"
    node = get_path(cfg, where, None, source=source)
    if not is_node(node):
        raise ConfigError(f"{source}: {where} must be a dataset node like {{type: datasets/voc, split: train}}; "
                          f"got {node!r}")
    pole_node = _pole_node(cfg.get("cam", {}) or {}, source)
    cam_dir = Path(args.cams).expanduser()
    if not cam_dir.is_dir():
        raise ConfigError(f"--cams {cam_dir} is not a folder; write the baseline CAMs first, e.g. "
                          f"`wsss cam BASELINE.yaml --split {split}` (then --cams <its run_dir>/cams/{split})")
    for flag, value in (("--batch-size", args.batch_size), ("--save-every", args.save_every)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.num_workers < 0:
        raise ConfigError(f"--num-workers must be >= 0, got {args.num_workers}")

    run_dir = Path(cfg.get("run_dir") or "runs/default")
    spec = pole_node.get("synonyms")
    configured = pole_node.get("selection_cache") or (spec.get("cache") if isinstance(spec, Mapping) else None)
    out = Path(args.out or configured or run_dir / f"pole_selection_{split}.json").expanduser()
    if configured is not None and Path(configured).expanduser() != out:
        print(f"note: the config's cams/pole reads the selection cache {configured}, not {out}")
    try:
        pole = build_synonyms(_synonyms_spec(spec, args), out)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WSSSError):
            raise
        raise ConfigError(f"{source}: cam.model.synonyms / --synonyms: {exc}") from None

    arch = args.clip or pole_node.get("clip_model") or DEFAULT_CLIP
    weights = args.clip_weights if args.clip_weights is not None else pole_node.get("clip_weights", "default")
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if weights == "default":
        if arch not in DEFAULT_CLIP_WEIGHTS:
            raise ConfigError(f"--clip-weights default knows the weights of {', '.join(DEFAULT_CLIP_WEIGHTS)}; pass "
                              f"--clip-weights <file or released:name> for {arch!r} (or 'none': random)")
        weights = DEFAULT_CLIP_WEIGHTS[arch]
    device = _device(args.device or str(cfg.get("device", "auto")))

    dataset = build(node, where)
    torch.manual_seed(int(cfg.get("seed", 0)))  # a CLIP without weights is the same in every run
    clip = load_clip(arch, weights, device=device)
    describe = dataset.describe() if callable(getattr(dataset, "describe", None)) else f"{len(dataset)} images"
    print(f"{SELECT_COMMAND}: {where}: {describe}")
    print(f"CLIP {arch} ({clip.source}) on {device}; baseline CAMs: {cam_dir}; cache: {out}")
    chosen = pole.select_dataset(dataset, cam_dir, clip, batch_size=args.batch_size, progress=not args.no_progress,
                                 rebuild=args.rebuild, num_workers=args.num_workers, save_every=args.save_every)
    print(frequency_table(pole, dataset.class_names, chosen))
    print(f"selection cache: {out} ({len(chosen)} images)")
    print(f"train POLE with cam.model: {{type: cams/pole, selection_cache: {out}}}")
    return chosen


def frequency_table(pole: PoleSynonyms, class_names: Sequence[str],
                    selections: Mapping[str, Mapping[int, str]]) -> str:
    """Per class: instances, the share in which the class word was chosen (POLE's Fig. 4), and the
    share of every candidate, in table order (class word first). Percentages of the class's instances."""
    names = [str(n) for n in class_names]
    candidates = pole.candidates(names)
    counts = [dict.fromkeys(words, 0) for words in candidates]
    for chosen in selections.values():
        for c, word in chosen.items():
            counts[c][word] = counts[c].get(word, 0) + 1
    width = max([len("class"), *(len(n) for n in names)])
    total = sum(sum(c.values()) for c in counts)
    lines = [f"POLE selections: {len(selections)} images, {total} class instances (% of each class's instances)",
             f"{'class':<{width}}  {'n':>6}  {'class word':>10}  chosen"]
    for name, words, count in zip(names, candidates, counts):
        n = sum(count.values())
        if not n:
            lines.append(f"{name:<{width}}  {0:>6}  {'-':>10}  -")
            continue
        shares = "  ".join(f"{w} {100 * count[w] / n:.1f}%" for w in words)
        lines.append(f"{name:<{width}}  {n:>6}  {100 * count[words[0]] / n:>9.1f}%  {shares}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers
def _pole_node(cam: Any, source: str) -> dict[str, Any]:
    """``cam.model`` when it is a ``cams/pole`` node (its keywords are defaults), else ``{}``."""
    model = cam.get("model") if isinstance(cam, Mapping) else None
    if not is_node(model):
        return {}
    kind, name = split_type(model["type"], f"{source}: cam.model")
    return dict(model) if kind == "cams" and name.split(":")[-1] == "pole" else {}


def _synonyms_spec(spec: Any, args: argparse.Namespace) -> Any:
    """The synonym strategy's description: ``cam.model.synonyms`` with ``--synonyms`` and
    ``--num-synonyms`` applied; its own ``cache`` is dropped (the cache is ``--out``)."""
    if args.synonyms is None and args.num_synonyms is None:
        if isinstance(spec, Mapping):
            return {k: v for k, v in spec.items() if k != "cache"}
        return spec
    if spec is None or isinstance(spec, str):
        spec = {} if spec is None else {"synonyms": spec}
    elif not isinstance(spec, Mapping):
        raise ConfigError(f"cam.model.synonyms must be a table name, a file, or pole_synonyms keywords; got {spec!r}")
    spec = {k: v for k, v in spec.items() if k != "cache"}
    if args.synonyms is not None:
        spec["synonyms"] = args.synonyms
    if args.num_synonyms is not None:
        spec["num_synonyms"] = args.num_synonyms
    return spec


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return device


if __name__ == "__main__":
    sys.exit(main())
