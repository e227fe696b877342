"""Checking a doc command as the CLI would before it computes anything (``tests/test_doc_commands.py``).

The fake VOC and COCO layouts the checks build datasets from, the parsers of ``wsss``,
``wsss-pole-select`` and ``python -m benchmarks``, the config checks per command, and the chain
(:class:`ChainState`): the outputs of a file's earlier commands, made empty so that later ones find them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import importlib
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from doc_commands import (
    PLACEHOLDER_DIR,
    REPO,
    DocCommand,
    argv_of,
    set_pairs,
    synopsis_variants,
)
from PIL import Image

_ACCEPTED = (re.compile(r"is not downloaded: get"),)
_MISSING_FILE = re.compile(r"weights file '[^']+' not found at (\S+?);")


@dataclasses.dataclass
class ChainState:
    """What the checks of one command know about its file: the files the earlier commands write
    (their folders are made empty) and the config whose header it is."""

    produced_files: set[str] = dataclasses.field(default_factory=set)
    own_config: str = ""
    """The config whose header is being checked: ``wsss run`` of it must run every stage it configures."""


# ----------------------------------------------------------------------------------------- fake data
IMAGE_SIZE = (12, 16)


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)).save(path)


def make_fake_voc(root: Path) -> Path:
    """``root/VOCdevkit/VOC2012`` with 4 images of two classes each and the train, val, trainval,
    train_aug lists (what wsss_kit.data.voc reads)."""
    from wsss_kit.data import save_mask_png, voc_colormap

    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation",
              "ImageSets/SegmentationAug"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    names = [f"2007_00{i:04d}" for i in range(4)]
    for i, name in enumerate(names):
        _image(voc / "JPEGImages" / f"{name}.jpg", i)
        mask = np.zeros(IMAGE_SIZE, dtype=np.uint8)
        mask[2:6, 2:7], mask[7:11, 8:14], mask[0, :] = 1 + i, 15, 255
        for folder in ("SegmentationClass", "SegmentationClassAug"):
            save_mask_png(voc / folder / f"{name}.png", mask, voc_colormap())
    sets = voc / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (sets / "val.txt").write_text("\n".join(names[2:]) + "\n")
    (sets / "trainval.txt").write_text("\n".join(names) + "\n")
    (voc / "ImageSets/SegmentationAug/train_aug.txt").write_text(
        "".join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in names))
    return root / "VOCdevkit"


def make_fake_coco(root: Path) -> Path:
    """``root/coco``: train2014 and val2014 with 2 images each, a person and a dog polygon per image."""
    h, w = IMAGE_SIZE
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for s, split in enumerate(("train", "val")):
        (root / f"{split}2014").mkdir(exist_ok=True)
        images, anns = [], []
        for i in (1, 2):
            name = f"COCO_{split}2014_{i:012d}.jpg"
            _image(root / f"{split}2014" / name, 10 * s + i)
            images.append({"id": i, "file_name": name, "height": h, "width": w})
            anns.append({"id": 10 * i, "image_id": i, "category_id": 1, "iscrowd": 0, "area": 20.0,
                         "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]]})
            anns.append({"id": 10 * i + 1, "image_id": i, "category_id": 18, "iscrowd": 0, "area": 20.0,
                         "segmentation": [[8, 6, 14, 6, 14, 10, 8, 10]]})
        (root / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(
            {"images": images, "annotations": anns,
             "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}))
    return root


# ----------------------------------------------------------------------------------------- parsers
@functools.cache
def harness_parser() -> argparse.ArgumentParser:
    """The ``python -m benchmarks`` parser (the harness's ``benchmarks/__main__.py``)."""
    if str(REPO) not in sys.path:  # python -m benchmarks runs from the repository's root
        sys.path.insert(0, str(REPO))
    module = importlib.import_module("benchmarks.__main__")
    return module.build_parser()


@functools.cache
def wsss_parser() -> argparse.ArgumentParser:
    from wsss_kit.cli.main import build_parser

    return build_parser()


@functools.cache
def pole_select_parser() -> argparse.ArgumentParser:
    from wsss_pole.cli import build_parser

    return build_parser()


def parser_and_args(argv: list[str]) -> tuple[str, argparse.ArgumentParser, list[str]]:
    """(program, parser, its arguments) for a command's words (parsers are built once: parsing
    leaves them as they were)."""
    if argv[0] == "wsss":
        return "wsss", wsss_parser(), argv[1:]
    if argv[0] == "wsss-pole-select" or argv[:3] == ["python", "-m", "wsss_pole.cli"]:
        return "wsss-pole-select", pole_select_parser(), argv[1:] if argv[0] == "wsss-pole-select" else argv[3:]
    if argv[:3] == ["python", "-m", "benchmarks"]:
        return "benchmarks", harness_parser(), argv[3:]
    raise AssertionError(f"not a command: {argv}")


def parse(parser: argparse.ArgumentParser, args: list[str]) -> tuple[argparse.Namespace | None, str]:
    """(namespace, "") or (None, argparse's message)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(args), ""
    except SystemExit as exc:
        if exc.code in (0, None):  # --help, --version
            return None, ""
        return None, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {exc.code}"


# ----------------------------------------------------------------------------------------- checks
def problems_of(exc: Exception) -> list[str]:
    """The problems listed in one error (``plan_run`` lists several as ``  - ...`` lines)."""
    text = str(exc)
    if "\n  - " in text:
        return [p.strip() for p in text.split("\n  - ")[1:]]
    return [text]


def unaccepted(problems: list[str], state: ChainState) -> list[str]:
    """The problems a fake layout does not explain (see the module docstring)."""
    out = []
    for p in problems:
        if any(a.search(p) for a in _ACCEPTED):
            continue
        missing = _MISSING_FILE.search(p)
        if missing and (PLACEHOLDER_DIR in missing.group(1) or os.environ.get("WSSS_WEIGHTS_DIR", "\0") in p
                        or os.path.normpath(missing.group(1)) in state.produced_files
                        or _other_run_output(missing.group(1))):
            continue
        out.append(p)
    return out


def is_repo_config(path: str) -> bool:
    """A config named with a folder (``benchmarks/x.yaml``) must exist; a bare name is the reader's own."""
    return "/" in path and not path.startswith(PLACEHOLDER_DIR)


@functools.lru_cache(maxsize=1)
def benchmark_run_dirs() -> frozenset[str]:
    """The ``run_dir`` of every benchmark config."""
    import yaml

    out = set()
    for path in sorted((REPO / "benchmarks").rglob("*.yaml")):
        with contextlib.suppress(Exception):
            run_dir = yaml.safe_load(path.read_text(encoding="utf-8")).get("run_dir")
            if isinstance(run_dir, str):
                out.add(os.path.normpath(run_dir))
    return frozenset(out)


def _other_run_output(path: str) -> bool:
    """``runs/<name>/<stage folder>/...`` of a benchmark config's run directory."""
    from wsss_kit.pipeline.stage_table import STAGE_TABLE

    parts = Path(os.path.normpath(path)).parts
    folders = {f for st in STAGE_TABLE for f in st.folders}
    return len(parts) >= 3 and str(Path(*parts[:2])) in benchmark_run_dirs() and parts[2] in folders


def _make_source_folders(cfg: dict[str, Any]) -> None:
    """Placeholder mask folders are the reader's, and the stage folders of a benchmark config's run
    directory are that config's: they exist."""
    for key in ("seeds", "pseudo_masks"):
        source = (cfg.get(key) or {}).get("source") if isinstance(cfg.get(key), dict) else None
        folders = source.values() if isinstance(source, dict) else [source]
        for folder in folders:
            if isinstance(folder, str) and (folder.startswith(PLACEHOLDER_DIR) or _other_run_output(folder)):
                Path(folder).mkdir(parents=True, exist_ok=True)


def _check_weights(spec: str | None, what: str) -> list[str]:
    from wsss_kit.errors import WSSSError
    from wsss_kit.weights import resolve

    if spec is None:
        return []
    try:
        resolve(spec, purpose=what)
    except WSSSError as exc:
        return [str(exc)]
    return []


def _plan(cfg: dict[str, Any], run_dir: Path, source: str, stages: list[str] | None = None,
          restart: str | None = None, shard: str | None = None) -> list[str]:
    from wsss_kit.errors import WSSSError
    from wsss_kit.pipeline.context import Shard
    from wsss_kit.pipeline.validation import plan_run

    try:
        plan = plan_run(cfg, run_dir, stages=stages, restart=restart, shard=Shard.parse(shard), source=source)
    except WSSSError as exc:
        return problems_of(exc)
    problems = []
    model = cfg.get("cam", {}).get("model") if isinstance(cfg.get("cam"), dict) else None
    cache = model.get("selection_cache") if isinstance(model, dict) else None
    if "train_cam" in plan.pending and isinstance(cache, str) and not Path(cache).is_file() \
            and not cache.startswith(PLACEHOLDER_DIR):
        problems.append(f"cam.model.selection_cache {cache} does not exist and no earlier command writes it")
    return problems


def _left_out(cfg: dict[str, Any], run_dir: Path, stages: list[str], source: str) -> list[str]:
    """The stages a config sets up (what they need is there, and they have something to do) that
    ``--stages`` leaves out: a header's run of its own config gives every number the config is for."""
    from wsss_kit.config import get_path
    from wsss_kit.pipeline.context import RunContext
    from wsss_kit.pipeline.stage_table import STAGE_TABLE

    ctx = RunContext(cfg, run_dir, source=source)
    out = []
    for st in STAGE_TABLE:
        if st.name in stages or any(all(get_path(cfg, alt, None) is None for alt in need.split("|"))
                                    for need in st.needs):
            continue
        if not st.needs and all(get_path(cfg, sec, None) is None for sec in st.sections):
            continue  # seeds: at the default threshold unless the config has a seeds section
        with contextlib.redirect_stdout(io.StringIO()):
            if st.nothing_to_do is not None and st.nothing_to_do(ctx) is not None:
                continue
        out.append(f"--stages leaves out {st.name} ({st.summary}), which this config sets up")
    return out


def _root_problems(config: str, cfg: dict[str, Any], splits: list[str]) -> list[str]:
    """A command that moves some of the data roots it reads (``--set data.train.root=/data/VOCdevkit``)
    must move all of them: the others would stay at the config's relative ``root: VOCdevkit``."""
    from wsss_kit.config import get_path

    base = load_config(config)
    roots = {s: (get_path(cfg, f"data.{s}.root", None), get_path(base, f"data.{s}.root", None)) for s in splits}
    moved = {s: new for s, (new, old) in roots.items() if new != old}
    if not moved:
        return []
    return [f"the command sets data.{next(iter(moved))}.root to {next(iter(moved.values()))} but leaves data.{s}.root "
            f"at the config's {old!r}; add --set data.{s}.root=..."
            for s, (new, old) in roots.items() if s not in moved and isinstance(old, str)
            and not Path(old).expanduser().is_absolute()]


def _schema(cfg: dict[str, Any], drop: tuple[str, ...] = ()) -> list[str]:
    from wsss_kit.pipeline.validation import schema_problems

    return [p for p in schema_problems(cfg) if not p.startswith(drop)]


@functools.cache
def _read_config(real_path: str) -> dict[str, Any]:
    from wsss_kit.config import load_config as read

    return read(real_path)


def load_config(config: str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`wsss_kit.config.load_config`, each file parsed once (YAML parsing is most of the time)."""
    from wsss_kit.config import apply_overrides

    if not Path(config).is_file():
        from wsss_kit.config import load_config as read

        return read(config, overrides)  # the error it gives
    return apply_overrides(_read_config(os.path.realpath(config)), overrides)


def _load(config: str, overrides: list[str]) -> dict[str, Any]:
    cfg = load_config(config, overrides)
    _make_source_folders(cfg)
    return cfg


SPLIT_COMMANDS = {"refine": ("pseudo_masks", ("data", "refiner", "pseudo_masks", "seeds")),
                  "predict": ("predictions", ("data", "head.model", "head.infer"))}
"""``wsss refine`` / ``wsss predict``: their output folder and the config sections they read."""


def _split_command_problems(args: argparse.Namespace, cfg: dict[str, Any]) -> list[str]:
    """What ``wsss refine`` / ``wsss predict`` check before their first image: the schema less the
    sections they do not read, ``--checkpoint``, the dataset of ``--split`` (their own
    :func:`~wsss_kit.cli.split_command.start_split`, which writes nothing), and their section."""
    from wsss_kit.cli.split_command import start_split
    from wsss_kit.pipeline.sources import pseudo_mask_sources

    folder, reads = SPLIT_COMMANDS[args.command]
    with contextlib.redirect_stdout(io.StringIO()):
        job = start_split(args, folder, reads)
    if args.command == "refine" and job.ctx.get("refiner", None) is None:
        return [f"{args.config}: wsss refine needs a refiner section"]
    if args.command == "refine" and pseudo_mask_sources(job.ctx):
        return [f"{args.config}: pseudo_masks.source brings the pseudo masks: there is nothing to refine"]
    if args.command == "predict" and job.ctx.get("head.model", None) is None:
        return [f"{args.config}: wsss predict needs head.model"]
    return []


def _check_demo_chain(args: argparse.Namespace) -> list[str]:
    """``wsss demo --pipeline NAME``: the pipeline's run and (clims, pole) its baseline run, each checked as
    the demo checks it; the baseline checkpoint and POLE's selection cache are the demo's own outputs."""
    from wsss_kit.cli.demo import BASELINE_CONFIG, BASELINE_STAGES, checkable_config, demo_configs
    from wsss_kit.errors import WSSSError

    try:
        configs = demo_configs(args.pipeline, args.overrides, args.out)
    except WSSSError as exc:
        return problems_of(exc)
    runs = [(checkable_config(configs), configs.run_dir, configs.source, None)]
    if configs.baseline_cfg is not None:
        runs.append((configs.baseline_cfg, configs.baseline_dir, BASELINE_CONFIG, list(BASELINE_STAGES)))
    problems = []
    for cfg, run_dir, source, stages in runs:
        if getattr(args, "print_config", False):
            problems += _schema(cfg)
            continue
        cfg = copy.deepcopy(cfg)
        if isinstance(cfg.get("cam", {}).get("model"), dict):
            cfg["cam"]["model"].pop("selection_cache", None)  # the demo writes it before the run trains
        problems += _plan(cfg, run_dir, source, stages, args.restart if source == configs.source else None)
    return problems


def _run_weights(args: argparse.Namespace) -> list[str]:
    """``wsss weights``: run (it lists files); exit 1 (files missing) is what a fake layout gives."""
    from wsss_kit.cli.weights import EXIT_CONFIG, weights

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = weights(args)
    return [f"wsss weights exits {code}: {err.getvalue().strip()}"] if code == EXIT_CONFIG else []


def check_wsss(args: argparse.Namespace, state: ChainState) -> list[str]:
    """The checks ``wsss COMMAND`` makes before it computes anything."""
    from wsss_kit.cli.main import demo_config_path, stage_verbs
    from wsss_kit.config import apply_overrides, build, parse_config
    from wsss_kit.errors import WSSSError

    command = args.command
    config = getattr(args, "config", None)
    if command == "weights" and (config is None or is_repo_config(config)):
        return _run_weights(args)  # it only reads: run it
    if command == "demo" and args.pipeline != "resnet_cam":
        return _check_demo_chain(args)
    if command == "demo":
        cfg = apply_overrides(parse_config(demo_config_path().read_text(encoding="utf-8"), source="demo.yaml"),
                              args.overrides)
        config = "demo.yaml"
    elif config is None:
        return []  # plugins, eval, weights --list: nothing to load
    elif not is_repo_config(config):
        return []  # the reader's own config
    else:
        cfg = _load(config, getattr(args, "overrides", []) or [])
    run_dir = Path(getattr(args, "out", None) or cfg.get("run_dir") or "runs/default")
    if getattr(args, "print_config", False):
        return _schema(cfg)
    if command in ("run", "demo") or command in stage_verbs():
        stages = args.stages.split(",") if getattr(args, "stages", None) else None
        if command in stage_verbs():
            stages = [stage_verbs()[command][0]]
        problems = _plan(cfg, run_dir, config, stages, args.restart, args.shard)
        if command != "demo":
            problems += _root_problems(config, cfg, ["train", "eval"])
        if command == "run" and stages and os.path.normpath(config) == state.own_config \
                and not unaccepted(problems, state):
            problems += _left_out(cfg, run_dir, stages, config)
        return problems
    if command == "cam":
        problems = _schema(cfg, drop=("cam.train is required",)) + _root_problems(config, cfg, [args.split])
        problems += _check_weights(args.checkpoint, "--checkpoint")
        try:
            from wsss_kit.cli.cam import threshold_setting
            from wsss_kit.pipeline.context import RunContext, Shard

            ctx = RunContext(cfg, run_dir, shard=Shard.parse(args.shard), source=config)
            if not args.no_seeds:
                threshold_setting(args, ctx)
            ds = ctx.dataset(args.split)
            import torch

            with torch.device("meta"):
                build(dict(cfg["cam"]["model"]), "cam.model", num_classes=ds.num_classes)
        except WSSSError as exc:
            problems += problems_of(exc)
        return problems
    if command == "check-data":
        problems = _schema(cfg)
        for key, node in (cfg.get("data") or {}).items():
            try:
                build(node, f"data.{key}")
            except WSSSError as exc:
                problems.append(str(exc))
        return problems
    if command in SPLIT_COMMANDS:
        return _split_command_problems(args, cfg) + _root_problems(config, cfg, [args.split])
    problems = _schema(cfg)  # commands added later
    problems += _root_problems(config, cfg, [args.split] if isinstance(getattr(args, "split", None), str)
                               else ["train", "eval"])
    problems += _check_weights(getattr(args, "checkpoint", None), "--checkpoint")
    return problems


def check_pole_select(args: argparse.Namespace) -> list[str]:
    """What ``wsss-pole-select`` checks before it loads CLIP: the dataset of ``--split`` and ``--cams``."""
    from wsss_kit.config import build, get_path
    from wsss_kit.errors import WSSSError

    if not is_repo_config(args.config):
        return []
    cfg = _load(args.config, args.overrides)
    problems = _root_problems(args.config, cfg, [args.split])
    cams = Path(args.cams)
    if args.cams.startswith(PLACEHOLDER_DIR):
        cams.mkdir(parents=True, exist_ok=True)
    if not cams.is_dir():
        problems.append(f"--cams {args.cams} does not exist and no earlier command writes it")
    try:
        build(get_path(cfg, f"data.{args.split}"), f"data.{args.split}")
    except WSSSError as exc:
        problems.append(str(exc))
    problems += _check_weights(args.clip_weights, "--clip-weights") if args.clip_weights not in (None, "none",
                                                                                                  "default") else []
    return problems


def check_harness(args: argparse.Namespace) -> list[str]:
    """A table id must be one of the harness's tables, and ``--data-root`` a folder."""
    from benchmarks.tables import TABLES

    problems = []
    table = getattr(args, "table", None)
    if table is not None and not table.isupper() and table not in TABLES:  # TABLE: a placeholder
        problems.append(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    root = getattr(args, "data_root", None)
    if root is not None and not Path(root).is_dir():
        problems.append(f"--data-root {root} is not a folder (a placeholder other than /data?)")
    return problems


def check_argv(argv: list[str], state: ChainState) -> list[str]:
    """Every problem of one command's words: argparse's, then the config checks'."""
    from wsss_kit.errors import WSSSError

    program, parser, args_list = parser_and_args(argv)
    args, error = parse(parser, args_list)
    if error:
        return [f"{program}: {error}"]
    if args is None:
        return []
    try:
        if program == "wsss":
            return unaccepted(check_wsss(args, state), state)
        if program == "wsss-pole-select":
            return unaccepted(check_pole_select(args), state)
        return check_harness(args)
    except WSSSError as exc:
        return unaccepted(problems_of(exc), state)


# ----------------------------------------------------------------------------------------- chains
def simulate_outputs(argv: list[str], state: ChainState) -> None:
    """Make (empty) the folders a command writes, so that later commands of its file find them."""
    with contextlib.suppress(Exception):  # a broken command has its own failing test
        program, parser, args_list = parser_and_args(argv)
        args, _ = parse(parser, args_list)
        if args is None:
            return
        config = getattr(args, "config", None)
        cfg: dict[str, Any] = {}
        if config and is_repo_config(config) and Path(config).is_file():
            cfg = load_config(config, args.overrides)
        run_dir = Path(getattr(args, "out", None) or cfg.get("run_dir") or "runs/default")
        if program == "wsss-pole-select":
            model = (cfg.get("cam") or {}).get("model") or {}
            out = Path(args.out or model.get("selection_cache") or run_dir / f"pole_selection_{args.split}.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("{}")
            return
        if program != "wsss":
            return
        if args.command == "cam":
            for folder in ("cams",) + (() if args.no_seeds else ("seeds",)):
                (run_dir / folder / args.split).mkdir(parents=True, exist_ok=True)
            return
        from wsss_kit.cli.main import stage_verbs
        from wsss_kit.pipeline.stage_table import STAGE_TABLE

        if args.command in stage_verbs():
            stages = [stage_verbs()[args.command][0]]
        elif args.command == "run":
            stages = args.stages.split(",") if args.stages else [s.name for s in STAGE_TABLE]
        else:
            return
        for st in STAGE_TABLE:
            if st.name in stages:
                if st.trains:
                    state.produced_files.add(os.path.normpath(run_dir / st.folders[0] / "model.pt"))
                for folder in st.folders:
                    for split in ("train", "eval"):
                        (run_dir / folder / split).mkdir(parents=True, exist_ok=True)


def check_in_order(command: DocCommand, commands: list[DocCommand]) -> list[str]:
    """Every problem of ``command`` after the commands before it in its file have written their outputs
    (run inside the workspace)."""
    state = ChainState(own_config=command.file)
    for earlier in commands:
        if earlier.file == command.file and earlier.line < command.line and earlier.kind == "command":
            simulate_outputs(argv_of(earlier), state)
    return check_command(command, state)


def check_command(command: DocCommand, state: ChainState | None = None) -> list[str]:
    """Every problem of one collected command (run inside the workspace)."""
    state = state or ChainState(own_config=command.file)
    if command.kind == "two-values":
        return [f"{command.text!r}: one --set takes one key=value; write --set before each"]
    if command.kind == "overrides":
        return check_argv(["wsss", "run", command.file, "--print-config", *set_pairs(command)], state)
    if command.kind == "name":
        program, parser, args = parser_and_args(argv_of(command))
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if args and subparsers and args[0] not in subparsers[0].choices:
            return [f"{program}: no sub-command {args[0]!r}; known: {', '.join(subparsers[0].choices)}"]
        return []  # `wsss cam` in prose names the command; its arguments are elsewhere
    texts = synopsis_variants(command.text) if command.kind == "synopsis" else [command.text]
    problems = []
    for text in texts:
        problems += check_argv(argv_of(command, text), state)
    return problems


# ----------------------------------------------------------------------------------------- weights
def unlisted_weights(text: str) -> list[str]:
    """The released files a config's values load (``released:NAME``) that its comments name neither by
    file name nor by ``released:`` name."""
    from wsss_kit.weights.released import RELEASED

    lines = text.splitlines()
    header = "\n".join(line for line in lines if line.strip().startswith("#"))
    body = "\n".join(line.split("#")[0] for line in lines if not line.strip().startswith("#"))
    names = sorted(set(re.findall(r"released:(\w+)", body)))
    unknown = [n for n in names if n not in RELEASED]
    assert not unknown, f"unknown released checkpoints {unknown}"
    return [f"{RELEASED[n].filename} (released:{n})" for n in names
            if n not in header and RELEASED[n].filename not in header]
