"""Every command written in a config header or a doc goes through the CLI's argument parser and the
config checks (issue 12, item 5), so a broken header cannot land.

Collected (one test case per command, id ``file:line``):

* the comment lines of every ``benchmarks/**/*.yaml`` and ``wsss_kit/configs/*.yaml``, and the lines
  of ``README.md``, ``docs/*.md``, ``benchmarks/README.md``, ``plugins/*/README.md`` and
  ``examples/**/*.md`` (code blocks, indented or fenced, and inline code) that start with ``wsss ``,
  ``wsss-pole-select ``, ``python -m benchmarks `` or ``python -m wsss_pole.cli`` (after the
  comment's ``#``, a shell prompt ``$`` or ``VAR=value`` environment assignments), joined over
  trailing ``\\`` continuations and split with :func:`shlex.split` (a trailing ``# ...`` is a comment);
* in config headers, lines that start with ``--set``: overrides recommended for that config, checked
  as ``wsss run THAT_CONFIG --set ...`` (parse, load, run schema);
* anywhere in those comments and docs, ``--set a=1 b=2`` (argparse takes only ``a=1``): always a failure.

How each command is checked: parsed by its parser (:func:`wsss_kit.cli.main.build_parser`,
:func:`wsss_pole.cli.build_parser`, the harness's ``benchmarks.__main__.build_parser``); then a
config it names is loaded with its ``--set`` overrides and checked as the command would check it
(``wsss run`` and the stage verbs: :func:`~wsss_kit.pipeline.validation.plan_run` with the command's
``--stages``/``--restart``/``--shard``/``--out``, the dry run; ``wsss cam``: the run schema less
``cam.train``, the dataset of ``--split``, ``cam.model`` built on the meta device, ``--checkpoint``
and ``--bg-threshold``; ``wsss-pole-select``: the dataset, ``--cams``; ``python -m benchmarks
reproduce``: a known table id, ``--data-root`` a folder; ``wsss refine`` / ``wsss predict``: their
own :func:`~wsss_kit.cli.split_command.start_split` (schema, ``--checkpoint``, dataset) and section;
``wsss weights`` only reads, so it runs: exit 2 fails, exit 1 (files missing) is expected; any other
command with a config: the run schema). Two more rules: a command that moves one data root it reads (``--set
data.train.root=/data/VOCdevkit``) moves all of them, and a header's ``wsss run`` of its own config
with ``--stages`` leaves out no stage the config sets up (the POLE configs' ``irn_rw`` section gives
the "+RW" column only through ``train_refiner`` and ``pseudo_masks``). Commands run in a fresh folder
per test, whose ``VOCdevkit`` and ``coco`` (and ``data/VOCdevkit``, ``data/coco``) are tiny fake
layouts (the configs' own ``root: VOCdevkit`` / ``root: coco`` resolve to them).

Besides the commands: every ``released:`` weights file a benchmark config loads is named in its
header (by file name or ``released:`` name), and every config a table of the harness runs names a
``python -m benchmarks reproduce`` of one of its tables.

What a command may leave unresolved (accepted, everything else fails):

* weights: a released checkpoint that "is not downloaded" (``WSSS_WEIGHTS_DIR`` is an empty folder),
  or a weights file under a placeholder path (below) that is "not found";
* placeholder configs: a config named without a folder (``my_run.yaml``, ``CONFIG``, ``pole.yaml``)
  is the reader's own file: the command is parsed only; a config with a folder must exist; an
  upper-case table id (``reproduce TABLE``) is a placeholder too, any other must be a known table;
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

Not covered: what the commands compute (the pipeline tests do that), and ``wsss eval``'s folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_command_checks import (
    check_command,
    check_in_order,
    make_fake_coco,
    make_fake_voc,
    unlisted_weights,
)
from doc_commands import (
    PLACEHOLDER_DIR,
    REPO,
    DocCommand,
    all_commands,
    argv_of,
    benchmark_configs,
    collect_commands,
    map_placeholders,
    synopsis_variants,
)

ALL = all_commands()
CONFIGS = benchmark_configs()


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


# ----------------------------------------------------------------------------------------- tests
def test_commands_are_found():
    files = {c.file for c in ALL}
    assert "benchmarks/weakclip/voc.yaml" in files and "README.md" in files
    assert len([c for c in ALL if c.kind == "command"]) >= 60


_EXAMPLE_PLUGIN = ("examples/third_party_plugin/", "wsss-example-plugin")
"""Commands of the example plugin's README read what ``pip install ./examples/third_party_plugin``
installs (its released checkpoint): they are checked where that distribution is installed
(tests/test_third_party_plugin.py installs it into a scratch environment and runs them there)."""


def _needs_missing_example_plugin(command: DocCommand) -> bool:
    from importlib import metadata

    if not command.file.startswith(_EXAMPLE_PLUGIN[0]) or command.kind != "command":
        return False
    try:
        metadata.distribution(_EXAMPLE_PLUGIN[1])
    except metadata.PackageNotFoundError:
        return "wsss weights" in command.text
    return False


@pytest.mark.parametrize("command", ALL, ids=[c.id for c in ALL])
def test_doc_command(command: DocCommand, workspace: Path):
    if _needs_missing_example_plugin(command):
        pytest.skip(f"{command.id} reads the example plugin's data: pip install ./{_EXAMPLE_PLUGIN[0]} to check it")
    problems = check_in_order(command, ALL)
    assert not problems, f"{command.id}: {command.text}\n" + "\n".join(f"  - {p}" for p in problems)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_header_lists_the_weight_files_of_its_config(path: Path):
    """A reader who follows a header has every released file the config loads: each one is named in
    the comments, by its file name or its ``released:`` name (``wsss weights CONFIG`` says where)."""
    missing = unlisted_weights(path.read_text(encoding="utf-8"))
    assert not missing, f"{path.relative_to(REPO)}: the header does not name {', '.join(missing)}"


def table_configs() -> dict[str, set[str]]:
    """``{config under benchmarks/: the ids of the tables whose runs use it}``."""
    from doc_command_checks import harness_parser

    harness_parser()  # puts the repository's root on sys.path, as `python -m benchmarks` has it
    from benchmarks.tables import TABLES

    uses: dict[str, set[str]] = {}
    for table_id, table in TABLES.items():
        for run in table.runs:
            uses.setdefault(run.config, set()).add(table_id)
    return uses


def test_table_configs_name_the_one_command():
    """Every config a table runs says, in its header, how to reproduce a table it belongs to in one
    command (``python -m benchmarks reproduce TABLE ...``, itself checked by test_doc_command)."""
    uses = table_configs()
    assert "weakclip/voc.yaml" in uses and "pole/table1_pole.yaml" in uses
    missing = []
    for config, tables in sorted(uses.items()):
        named = set(re.findall(r"python -m benchmarks reproduce (\w+)", (REPO / "benchmarks" / config).read_text()))
        if not named & tables:
            missing.append(f"{config} (in {', '.join(sorted(tables))})")
    assert not missing, "no `python -m benchmarks reproduce TABLE` line in the header of " + "; ".join(missing)


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
    ("wsss run benchmarks/resnet_cam/voc.yaml --stages train_cam,camz", "camz"),
    ("wsss run benchmarks/resnet_cam/voc.yaml --set cam.trian.steps=1", "trian"),
    ("wsss run benchmarks/resnet_cam/voc.yaml --set cam.train.steps=1 cam.train.lr=0.1", "unrecognized"),
    ("wsss run benchmarks/resnet_cam/voc.yaml --set cam.train.steps=-1", "cam.train.steps"),
    ("wsss run benchmarks/weakclip/voc.yaml --set refiner.preset=offical", "offical"),
    ("wsss train-cam benchmarks/resnet_cam/voc.yaml --set cam.model.backbone=resnet05", "resnet05"),
    ("wsss weights benchmarks/pole/table1_pole.yaml", None),
    ("wsss weights benchmarks/pole/table1_pole.yaml --set refiner.weights=released:torchvision_resnet5", "resnet5"),
    ("wsss weights --list --pattern nosuchcheckpoint", "nosuchcheckpoint"),
    ("wsss refine benchmarks/deeplab/weakclip_v1_wr38.yaml --split train", "refiner section"),
    ("wsss refine benchmarks/random_walk/mctformer_psa_voc.yaml --split train --checkpoint released:psa_res38_aff", None),
    ("wsss refine benchmarks/random_walk/mctformer_psa_voc.yaml --split train --batch-size 0", "--batch-size"),
    ("wsss predict benchmarks/resnet_cam/voc.yaml --split eval", "head.model"),
    ("wsss predict benchmarks/deeplab/weakclip_v1_wr38.yaml --split eval --checkpoint released:nosuch", "nosuch"),
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
def test_checker_catches_typos(line: str, expected: str | None, workspace: Path):
    Path("runs/pole_voc").mkdir(parents=True)
    Path("runs/pole_voc/selection_train_aug.json").write_text("{}")  # step 2 of the POLE header
    problems = check_command(DocCommand("benchmarks/pole/table1_pole.yaml", 1, line))
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
    assert map_placeholders("--set data.train.root=/data/VOCdevkit --set x=/data/coco") == \
        "--set data.train.root=data/VOCdevkit --set x=data/coco"
    assert map_placeholders("--data-root /data --weights-dir /data/weights") == \
        f"--data-root data --weights-dir {PLACEHOLDER_DIR}/weights"
    assert map_placeholders("--set a=/path/to/masks --set s=/data/mct_seeds --cams <run_dir>/cams") == \
        f"--set a={PLACEHOLDER_DIR}/to/masks --set s={PLACEHOLDER_DIR}/mct_seeds --cams {PLACEHOLDER_DIR}/given/cams"
