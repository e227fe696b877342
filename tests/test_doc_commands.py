"""Every command written in a config header or a doc goes through the CLI's argument parser and the
config checks (issue 12, item 5), so a broken header cannot land.

Collected (one test case per command, id ``file:line``):

* the comment lines of every ``benchmarks/**/*.yaml`` and ``wsss_kit/configs/*.yaml``, and the lines
  of ``README.md``, ``docs/*.md``, ``benchmarks/README.md``, ``plugins/*/README.md`` and
  ``examples/**/*.md`` (code blocks, indented or fenced, and inline code) that start with ``wsss ``,
  ``wsss-pole-select ``, ``python -m benchmarks `` or ``python -m wsss_pole.select`` (after the
  comment's ``#``, a shell prompt ``$`` or ``VAR=value`` environment assignments), joined over
  trailing ``\\`` continuations and split with :func:`shlex.split` (a trailing ``# ...`` is a comment);
* in config headers, lines that start with ``--set``: overrides recommended for that config, checked
  as ``wsss run THAT_CONFIG --set ...`` (parse, load, run schema);
* anywhere in those comments and docs, ``--set a=1 b=2`` (argparse takes only ``a=1``): always a failure.

How each command is checked: parsed by its parser (:func:`wsss_kit.cli.main.build_parser`,
:func:`wsss_pole.select.build_parser`, the harness's ``benchmarks.__main__.build_parser``); then a
config it names is loaded with its ``--set`` overrides and checked as the command would check it
(``wsss run`` and the stage verbs: :func:`~wsss_kit.pipeline.validation.plan_run` with the command's
``--stages``/``--restart``/``--shard``/``--out``, the dry run; ``wsss cam``: the run schema less
``cam.train``, the dataset of ``--split``, ``cam.model`` built on the meta device, ``--checkpoint``
and ``--bg-threshold``; ``wsss-pole-select``: the dataset, ``--cams``; any other command with a
config: the run schema). Commands run in a fresh folder per test, whose ``VOCdevkit`` and ``coco``
are tiny fake layouts (the configs' own ``root: VOCdevkit`` / ``root: coco`` resolve to them).

What a command may leave unresolved (accepted, everything else fails):

* weights: a released checkpoint that "is not downloaded" (``WSSS_WEIGHTS_DIR`` is an empty folder),
  or a weights file under a placeholder path (below) that is "not found";
* placeholder configs: a config named without a folder (``my_run.yaml``, ``CONFIG``, ``pole.yaml``)
  is the reader's own file: the command is parsed only; a config with a folder must exist;
* synopses (inline code with ``[optional]`` groups, ``a / b`` alternatives, ``|`` or ``...``): the
  optional groups and ``...`` are dropped, alternatives expanded, and what remains is parsed;
* placeholder paths: ``/data/VOCdevkit`` and ``/data/coco`` are the fake layouts; any other path under
  ``/data/`` or ``/path``, and ``<...>``, stands for the reader's own file or folder: it is mapped into
  the test's folder, and made to exist when the command reads it as a mask folder (``seeds.source``,
  ``pseudo_masks.source``) or a CAM folder (``--cams``);
* files and folders under ``runs/``: a command may read what an earlier command of the same file
  writes (the stage folders and checkpoints of its run directory, ``wsss cam``'s ``--out``,
  ``wsss-pole-select``'s cache), and the stage folders and checkpoints of any benchmark config's
  ``run_dir`` (``runs/weakclip_voc/pseudo_masks/train``): those are made (empty) before the command
  is checked; anything else there (a typo) is missing;
* harness commands (``python -m benchmarks``) are skipped, with that reason, while
  ``benchmarks/__main__.py`` does not exist.

Not covered: what the commands compute (the pipeline tests do that), and ``wsss eval``'s folders.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import io
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

PREFIXES = ("wsss ", "wsss-pole-select ", "python -m benchmarks ", "python -m wsss_pole.select")
_ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")
_TWO_VALUES = re.compile(r"--set\s+(?:'[^']*'|\"[^\"]*\"|[^\s'\"]+=\S*)\s+([A-Za-z_][\w-]*(?:\.[\w-]+)+=)")
_INLINE = re.compile(r"`([^`]+)`")
_LIST_MARK = re.compile(r"^(?:\d+\.|[-*])\s+")
_SET_PAIR = re.compile(r"--set\s+('[^']*'|\"[^\"]*\"|[^\s'\"]+)")
_ACCEPTED = (re.compile(r"is not downloaded: get"),)
_MISSING_FILE = re.compile(r"weights file '[^']+' not found at (\S+?);")
_SHELL_CONTROL = ("&", "&&", ";", "|", "||", ">", ">>", "2>&1")
PLACEHOLDER_DIR = "placeholder"


@dataclasses.dataclass
class ChainState:
    """The files the earlier commands of the file being checked write (their folders are made empty)."""

    produced_files: set[str] = dataclasses.field(default_factory=set)
    own_config: str = ""
    """The config whose header is being checked: ``wsss run`` of it must run every stage it configures."""


STATE = ChainState()


# ----------------------------------------------------------------------------------------- collection
@dataclasses.dataclass(frozen=True)
class DocCommand:
    """One command found in a file: ``text`` as written (continuations joined)."""

    file: str
    line: int
    text: str
    kind: str = "command"
    """``"command"``; ``"name"`` (inline code of a program and a sub-command, ``wsss cam``: the
    sub-command must exist); ``"synopsis"`` (usage line); ``"overrides"`` (``--set`` line of a config
    header); ``"two-values"`` (``--set a=1 b=2``: always a failure)."""

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}" + (":--set" if self.kind == "two-values" else "")


def doc_files() -> list[Path]:
    """Every file whose commands are checked."""
    files = sorted((REPO / "benchmarks").rglob("*.yaml")) + sorted((REPO / "wsss_kit" / "configs").glob("*.yaml"))
    files += [REPO / "README.md", REPO / "benchmarks" / "README.md"]
    files += sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "plugins").glob("*/README.md"))
    files += sorted((REPO / "examples").rglob("*.md"))
    return [f for f in files if f.is_file()]


def _command_start(text: str) -> str | None:
    """``text`` from the command on, when it is a command line (after a prompt and env assignments)."""
    text = _LIST_MARK.sub("", text.strip())
    if text.startswith("$ "):
        text = text[2:].lstrip()
    text = _ENV.sub("", text)
    return text if text.startswith(PREFIXES) else None


def _is_synopsis(text: str) -> bool:
    return any(mark in text for mark in ("[", "|", " / ", "...")) or "<" in text and "CONFIG" in text


def _join(lines: list[tuple[int, str]], i: int) -> tuple[str, int]:
    """The command at ``lines[i]`` joined over trailing backslashes; returns (text, index after it)."""
    text = lines[i][1].rstrip()
    j = i + 1
    while text.endswith("\\") and j < len(lines):
        text = text[:-1].rstrip() + " " + lines[j][1].strip()
        j += 1
    return text.rstrip("\\").strip(), j


def collect_commands(path: Path, text: str | None = None) -> list[DocCommand]:
    """The commands written in ``path`` (a YAML config or a markdown file); ``text`` replaces its content."""
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    raw = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    if path.suffix == ".yaml":
        lines = [(n, line.strip()[1:]) for n, line in enumerate(raw, 1) if line.strip().startswith("#")]
        code = [True] * len(lines)
    else:
        lines, code, fenced = [], [], False
        for n, line in enumerate(raw, 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            lines.append((n, line))
            code.append(fenced or line.startswith("    ") or line.startswith("\t")
                        or bool(line.strip()) and line.startswith("  ") and _command_start(line) is not None)
    found: list[DocCommand] = []
    i = 0
    while i < len(lines):
        n, line = lines[i]
        for match in _TWO_VALUES.finditer(line):
            found.append(DocCommand(rel, n, match.group(0), "two-values"))
        start = _command_start(line) if code[i] else None
        if start is not None:
            joined, j = _join(lines, i)
            found.append(DocCommand(rel, n, _command_start(joined) or start))
            i = j
            continue
        if path.suffix == ".yaml" and line.strip().startswith("--set "):
            joined, j = _join(lines, i)
            found.append(DocCommand(rel, n, joined, "overrides"))
            i = j
            continue
        for span in _INLINE.findall(line.replace("\\|", "|")):
            start = _command_start(span)
            if start is not None:
                kind = "synopsis" if _is_synopsis(start) else "name" if len(start.split()) <= 2 else "command"
                found.append(DocCommand(rel, n, start, kind))
        i += 1
    return found


ALL = [c for f in doc_files() for c in collect_commands(f)]


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


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> dict[str, Path]:
    """The fake VOC and COCO layouts (made once) and an empty weights folder."""
    root = tmp_path_factory.mktemp("doc_data")
    weights = root / "weights"
    weights.mkdir()
    return {"VOCdevkit": make_fake_voc(root / "voc"), "coco": make_fake_coco(root / "coco"), "weights": weights}


@pytest.fixture
def workspace(tmp_path, fake_data, monkeypatch) -> Path:
    """A folder laid out like the repository's root for the commands: ``benchmarks`` and ``wsss_kit``
    (links to the repository's), ``VOCdevkit`` and ``coco`` (the fake layouts, where the configs' own
    relative roots find them) and ``data/`` holding them too (the docs' ``/data``); runs land in ``runs/``."""
    for name in ("benchmarks", "wsss_kit"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    (tmp_path / "data").mkdir()
    for name in ("VOCdevkit", "coco"):
        (tmp_path / name).symlink_to(fake_data[name], target_is_directory=True)
        (tmp_path / "data" / name).symlink_to(fake_data[name], target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(fake_data["weights"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


# ----------------------------------------------------------------------------------------- argv
def _placeholders(text: str) -> str:
    """Map the docs' placeholder paths into the workspace (relative paths: the tests run there)."""
    text = re.sub(r"<[^<>]*>", PLACEHOLDER_DIR + "/given", text)
    text = re.sub(r"(?<![\w./])/data/(VOCdevkit|coco)(?=[/\s'\"}),;]|$)", r"data/\1", text)
    text = re.sub(r"(?<![\w./])/data/?(?=[\s'\"]|$)", "data", text)  # the folder that holds VOCdevkit/ and coco/
    return re.sub(r"(?<![\w./])/(?:data|path)(?=[/\s'\"}),;]|$)/?", PLACEHOLDER_DIR + "/", text)


def synopsis_variants(text: str) -> list[str]:
    """A usage line as the commands it stands for: ``[...]`` groups and ``...`` dropped, ``a / b``
    alternatives of the sub-command expanded."""
    text = re.sub(r"\[[^\[\]]*\]", " ", text).replace("...", " ")
    text = re.sub(r"\s+", " ", text).strip()
    if " / " not in text:
        return [text]
    head, *alternatives = text.split(" / ")
    prefix, first = head.rsplit(" ", 1)
    last_word, _, rest = alternatives[-1].partition(" ")
    words = [first, *alternatives[:-1], last_word]
    return [f"{prefix} {w} {rest}".strip() for w in words]


def argv_of(command: DocCommand, text: str | None = None) -> list[str]:
    """The words of a command with the placeholder paths mapped."""
    words = shlex.split(_placeholders(command.text if text is None else text), comments=True)
    ends = [i for i, w in enumerate(words) if w in _SHELL_CONTROL]
    return words[: ends[0]] if ends else words


# ----------------------------------------------------------------------------------------- parsers
def harness_parser() -> argparse.ArgumentParser | None:
    """The ``python -m benchmarks`` parser, or None while the harness does not exist."""
    if not (REPO / "benchmarks" / "__main__.py").is_file():
        return None
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    module = importlib.import_module("benchmarks.__main__")
    return module.build_parser()


def parser_and_args(argv: list[str]) -> tuple[str, argparse.ArgumentParser, list[str]]:
    """(program, parser, its arguments) for a command's words."""
    if argv[0] == "wsss":
        from wsss_kit.cli.main import build_parser

        return "wsss", build_parser(), argv[1:]
    if argv[0] == "wsss-pole-select" or argv[:3] == ["python", "-m", "wsss_pole.select"]:
        from wsss_pole.select import build_parser as pole_parser

        return "wsss-pole-select", pole_parser(), argv[1:] if argv[0] == "wsss-pole-select" else argv[3:]
    if argv[:3] == ["python", "-m", "benchmarks"]:
        parser = harness_parser()
        if parser is None:
            pytest.skip("benchmarks/__main__.py (the reproduce harness) does not exist yet")
        return "benchmarks", parser, argv[3:]
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


def unaccepted(problems: list[str]) -> list[str]:
    """The problems a fake layout does not explain (see the module docstring)."""
    out = []
    for p in problems:
        if any(a.search(p) for a in _ACCEPTED):
            continue
        missing = _MISSING_FILE.search(p)
        if missing and (PLACEHOLDER_DIR in missing.group(1) or os.environ.get("WSSS_WEIGHTS_DIR", "\0") in p
                        or os.path.normpath(missing.group(1)) in STATE.produced_files
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
    from wsss_kit.config import get_path, load_config

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


def _load(config: str, overrides: list[str]) -> dict[str, Any]:
    from wsss_kit.config import load_config

    cfg = load_config(config, overrides)
    _make_source_folders(cfg)
    return cfg


def check_wsss(args: argparse.Namespace) -> list[str]:
    """The checks ``wsss COMMAND`` makes before it computes anything."""
    from wsss_kit.cli.main import demo_config_path, stage_verbs
    from wsss_kit.config import apply_overrides, build, parse_config
    from wsss_kit.errors import WSSSError

    command = args.command
    config = getattr(args, "config", None)
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
        if command == "run" and stages and os.path.normpath(config) == STATE.own_config and not unaccepted(problems):
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
    problems = _schema(cfg)  # refine, predict, weights CONFIG, and commands added later
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
    if table is not None and table not in TABLES:
        problems.append(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    root = getattr(args, "data_root", None)
    if root is not None and not Path(root).is_dir():
        problems.append(f"--data-root {root} is not a folder (a placeholder other than /data?)")
    return problems


def check_argv(argv: list[str]) -> list[str]:
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
            return unaccepted(check_wsss(args))
        if program == "wsss-pole-select":
            return unaccepted(check_pole_select(args))
        return check_harness(args)
    except WSSSError as exc:
        return unaccepted(problems_of(exc))


# ----------------------------------------------------------------------------------------- chains
def simulate_outputs(argv: list[str]) -> None:
    """Make (empty) the folders a command writes, so that later commands of its file find them."""
    with contextlib.suppress(Exception):  # a broken command has its own failing test
        program, parser, args_list = parser_and_args(argv)
        args, error = parse(parser, args_list)
        if args is None:
            return
        config = getattr(args, "config", None)
        cfg: dict[str, Any] = {}
        if config and is_repo_config(config) and Path(config).is_file():
            from wsss_kit.config import load_config

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
                    STATE.produced_files.add(os.path.normpath(run_dir / st.folders[0] / "model.pt"))
                for folder in st.folders:
                    for split in ("train", "eval"):
                        (run_dir / folder / split).mkdir(parents=True, exist_ok=True)


def commands_before(command: DocCommand) -> list[DocCommand]:
    return [c for c in ALL if c.file == command.file and c.line < command.line and c.kind == "command"]


def check_command(command: DocCommand) -> list[str]:
    """Every problem of one collected command (run inside the workspace)."""
    if command.kind == "two-values":
        return [f"{command.text!r}: one --set takes one key=value; write --set before each"]
    if command.kind == "overrides":  # the --set pairs of a line that may go on in prose
        pairs = [v.rstrip(").,;") for v in _SET_PAIR.findall(_placeholders(command.text))]
        words = [w for v in pairs for w in ("--set", shlex.split(v)[0])]
        return check_argv(["wsss", "run", command.file, "--print-config", *words])
    if command.kind == "name":
        program, parser, args = parser_and_args(argv_of(command))
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if args and subparsers and args[0] not in subparsers[0].choices:
            return [f"{program}: no sub-command {args[0]!r}; known: {', '.join(subparsers[0].choices)}"]
        return []
    texts = synopsis_variants(command.text) if command.kind == "synopsis" else [command.text]
    problems = []
    for text in texts:
        problems += check_argv(argv_of(command, text))
    return problems


# ----------------------------------------------------------------------------------------- tests
def test_commands_are_found():
    files = {c.file for c in ALL}
    assert "benchmarks/weakclip/voc.yaml" in files and "README.md" in files
    assert len([c for c in ALL if c.kind == "command"]) >= 60


@pytest.mark.parametrize("command", ALL, ids=[c.id for c in ALL])
def test_doc_command(command: DocCommand, workspace: Path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "STATE", ChainState(own_config=command.file))
    for earlier in commands_before(command):
        simulate_outputs(argv_of(earlier))
    problems = check_command(command)
    assert not problems, f"{command.id}: {command.text}\n" + "\n".join(f"  - {p}" for p in problems)


CONFIGS = sorted((REPO / "benchmarks").rglob("*.yaml"))


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


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_header_lists_the_weight_files_of_its_config(path: Path):
    """A reader who follows a header has every released file the config loads: each one is named in
    the comments, by its file name or its ``released:`` name (``wsss weights CONFIG`` says where)."""
    missing = unlisted_weights(path.read_text(encoding="utf-8"))
    assert not missing, f"{path.relative_to(REPO)}: the header does not name {', '.join(missing)}"


def test_weights_check_catches_an_unlisted_file():
    text = ("# needs res50_cam.pth\ncam: {model: {checkpoint: released:irn_res50_cam}}\n"
            "refiner: {weights: released:torchvision_resnet50_imagenet}  # released:torchvision_resnet50_imagenet\n")
    assert unlisted_weights(text) == ["resnet50-19c8e357.pth (released:torchvision_resnet50_imagenet)"]
    assert unlisted_weights("# resnet50-19c8e357.pth\n" + text) == []


# ----------------------------------------------------------------------------------------- self-tests
GOOD = "wsss run benchmarks/deeplab/synthetic.yaml --set head.train.steps=2"


@pytest.mark.parametrize("line, expected", [
    (GOOD, None),
    ("wsss run benchmarks/deeplab/synthetic.yaml --stages train_cam,camz", "camz"),
    ("wsss run benchmarks/deeplab/synthetic.yaml --set head.trian.steps=1", "trian"),
    ("wsss run benchmarks/deeplab/synthetic.yaml --set head.train.steps=1 head.train.lr=0.1", "unrecognized"),
    ("wsss run benchmarks/deeplab/synthetic.yaml --restart seedz", "seedz"),
    ("wsss run benchmarks/deeplab/synthtic.yaml", "does not exist"),
    ("wsss runn benchmarks/deeplab/synthetic.yaml", "invalid choice"),
    ("wsss cam benchmarks/resnet_cam/voc.yaml --split val", "invalid choice"),
    ("wsss cam benchmarks/resnet_cam/voc.yaml --split eval --bg-threshold 1.5", "[0, 1]"),
    ("wsss run benchmarks/weakclip/voc.yaml --set seeds.source.train=runs/nowhere/seeds/train", "runs/nowhere"),
    ("wsss run benchmarks/resnet_cam/voc.yaml --set data.train.root=/data/coco", "VOC"),
    ("wsss run benchmarks/resnet_cam/voc.yaml --set data.train.root=/data/VOCdevkit", "leaves data.eval.root"),
    ("wsss cam benchmarks/resnet_cam/voc.yaml --split train --no-seeds --set data.train.root=/data/VOCdevkit", None),
    ("wsss-pole-select benchmarks/pole/table1_pole.yaml --cams runs/irn_baseline_voc/cams/train", "--cams"),
    ("python -m benchmarks reproduce weakclip_tabel4 --data-root /data", "weakclip_tabel4"),
    ("wsss run benchmarks/pole/table1_pole.yaml --stages train_cam,cams,seeds", "leaves out train_refiner"),
    ("wsss run benchmarks/pole/table1_pole.yaml --stages train_cam,cams,seeds,train_refiner,pseudo_masks", None),
    ("python -m benchmarks reproduce pole_table1 --data-root /datasets", "--data-root"),
    ("python -m benchmarks reproduce pole_table1 --data-root /data --weight-dir /w", "unrecognized"),
])
def test_checker_catches_typos(line: str, expected: str | None, workspace: Path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "STATE", ChainState(own_config="benchmarks/pole/table1_pole.yaml"))
    Path("runs/pole_voc").mkdir(parents=True)
    Path("runs/pole_voc/selection_train_aug.json").write_text("{}")  # step 2 of the POLE header
    problems = check_command(DocCommand("self-test", 1, line))
    if expected is None:
        assert problems == []
    else:
        assert problems and expected in "\n".join(problems), problems


def test_checker_catches_two_values_after_one_set_in_prose(tmp_path):
    header = ("# COCO: --set data.train.type=datasets/coco2014 data.train.root=coco\n"
              "#   --set head.train.momentum=0.9 head.train.weight_decay=1.0e-5\n"
              "# fine: --set a.b=1 --set c.d=2, and `--set cam.train.steps=5` alone\n")
    found = collect_commands(REPO / "benchmarks" / "x.yaml", header)
    assert [(c.line, c.kind) for c in found] == [(1, "two-values"), (2, "two-values"), (2, "overrides")]
    assert all(check_command(c) for c in found if c.kind == "two-values")


def test_collection_of_markdown(tmp_path):
    text = ("Run `wsss demo` first; `wsss run CONFIG [--set ...] [--out DIR]` is the synopsis.\n\n"
            "    wsss run benchmarks/a.yaml \\\n        --set x.y=1   # a comment\n\n"
            "```bash\n$ WSSS_KIT_DISABLE_PLUGINS=x wsss plugins --kind cams\n```\n"
            "| `wsss train-cam / cams CONFIG` | one stage |\n")
    found = collect_commands(REPO / "docs" / "x.md", text)
    assert [(c.line, c.kind, c.text) for c in found] == [
        (1, "name", "wsss demo"), (1, "synopsis", "wsss run CONFIG [--set ...] [--out DIR]"),
        (3, "command", "wsss run benchmarks/a.yaml --set x.y=1   # a comment"),
        (7, "command", "wsss plugins --kind cams"), (9, "synopsis", "wsss train-cam / cams CONFIG")]
    assert synopsis_variants("wsss train-cam / cams CONFIG") == ["wsss train-cam CONFIG", "wsss cams CONFIG"]
    assert argv_of(found[2]) == ["wsss", "run", "benchmarks/a.yaml", "--set", "x.y=1"]


def test_placeholder_paths_map_into_the_workspace():
    assert _placeholders("--set data.train.root=/data/VOCdevkit --set x=/data/coco") == \
        "--set data.train.root=data/VOCdevkit --set x=data/coco"
    assert _placeholders("--data-root /data --weights-dir /data/weights") == \
        f"--data-root data --weights-dir {PLACEHOLDER_DIR}/weights"
    assert _placeholders("--set a=/path/to/masks --set s=/data/mct_seeds --cams <run_dir>/cams") == \
        f"--set a={PLACEHOLDER_DIR}/to/masks --set s={PLACEHOLDER_DIR}/mct_seeds --cams {PLACEHOLDER_DIR}/given/cams"
