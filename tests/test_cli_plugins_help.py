"""The ``wsss`` CLI: plugin modules from ``--plugin`` / ``WSSS_KIT_PLUGINS``, every verb's help, the
options each verb offers, ``eval --classes`` paths and ``check-data``'s documented exit codes."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from wsss_kit.cli.main import build_parser, main, stage_verbs
from wsss_kit.config import dump_config
from wsss_kit.errors import PluginError
from wsss_kit.plugin_modules import PLUGINS_ENV, import_plugin_modules, plugin_module_names
from wsss_kit.registry import default_registry
from test_pipeline import tiny_config

REFINER_MODULE = "wsss_test_cli_refiner_plugin"
DATASET_MODULE = "wsss_test_cli_dataset_plugin"

REFINER_SOURCE = '''
import torch
import wsss_kit


@wsss_kit.register("refiners", "test_cli_argmax")
class ArgmaxRefiner(wsss_kit.Refiner):
    def __init__(self, bg_threshold: float = 0.3) -> None:
        self.bg_threshold = bg_threshold

    def refine(self, images, cams, labels):
        background = torch.full_like(cams[:, :1], self.bg_threshold)
        return torch.cat([background, cams], dim=1)


@wsss_kit.register("cams", "test_cli_tiny_cam")
class TinyCAM(wsss_kit.CAMGenerator):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = torch.nn.Conv2d(3, num_classes, 1)

    def forward(self, images, labels=None):
        logits = self.conv(images).mean(dim=(2, 3))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.multilabel_soft_margin_loss(logits, labels)
        return out

    def cams(self, images, labels, scales=(1.0,), flip=False):
        cams = torch.sigmoid(self.conv(images))
        return cams * labels[:, :, None, None].to(cams.dtype)
'''

DATASET_SOURCE = '''
import wsss_kit
from wsss_kit.data.synthetic import SyntheticDataset


@wsss_kit.register("datasets", "test_cli_tiny_world")
def tiny_world(split: str = "train"):
    return SyntheticDataset(split=split, num_images=3, image_size=32)
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path with the two plugin modules; their registrations are undone afterwards."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{REFINER_MODULE}.py").write_text(REFINER_SOURCE)
    (folder / f"{DATASET_MODULE}.py").write_text(DATASET_SOURCE)
    (folder / "wsss_test_cli_broken_plugin.py").write_text("import wsss_kit\nraise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    yield folder
    for kinds, module in (((("refiners", "test_cli_argmax"), ("cams", "test_cli_tiny_cam")), REFINER_MODULE),
                          ((("datasets", "test_cli_tiny_world"),), DATASET_MODULE)):
        if module in sys.modules:
            sys.modules.pop(module)
            for kind, name in kinds:
                default_registry().unregister(kind, name)
    sys.modules.pop("wsss_test_cli_broken_plugin", None)


def _config_with_refiner(tmp_path):
    cfg = tiny_config(["refiner={type: refiners/test_cli_argmax, bg_threshold: 0.25}"])
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(cfg))
    return path


# --------------------------------------------------------------------------- --plugin, WSSS_KIT_PLUGINS
def test_run_builds_a_config_naming_a_plugin_module_registered_with_plugin(plugin_dir, tmp_path, capsys):
    config = _config_with_refiner(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--dry-run"]) == 2
    assert "test_cli_argmax" in capsys.readouterr().err  # unknown without the module
    assert main(["run", str(config), "--out", str(out), "--dry-run", "--plugin", REFINER_MODULE]) == 0
    text = capsys.readouterr().out
    assert "type: refiners/test_cli_argmax" in text and "# plan" in text
    refiner = default_registry().create("refiners", "test_cli_argmax", bg_threshold=0.25)
    assert refiner.bg_threshold == 0.25 and not out.exists()


def test_stage_verbs_train_and_infer_with_a_plugin_modules_cam_and_report_progress(plugin_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.setenv("WSSS_KIT_PROGRESS", "lines")
    cfg = tiny_config(["cam.model={type: cams/test_cli_tiny_cam}", "cam.train.steps=4", "cam.train.log_every=2"])
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg))
    out = tmp_path / "run"
    assert main(["train-cam", str(config), "--out", str(out), "--plugin", REFINER_MODULE]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[wsss] train CAM: step ")]
    assert [x.split()[4] for x in lines] == ["2/4", "4/4"] and all(" loss " in x and " lr " in x for x in lines)
    assert [line.split(",")[0] for line in (out / "train_cam" / "log.csv").read_text().splitlines()] == \
        ["step", "2", "4"]
    assert main(["cams", str(config), "--out", str(out), "--plugin", REFINER_MODULE]) == 0
    text = capsys.readouterr().out
    assert "[wsss] CAMs [train]: 12/12 img (100%) | " in text and "[wsss] CAMs [eval]: 6/6 img (100%) | " in text
    assert len(list((out / "cams" / "train").glob("*.npz"))) == 12


def test_environment_variable_imports_modules_for_check_data(plugin_dir, tmp_path, monkeypatch, capsys):
    config = tmp_path / "data.yaml"
    config.write_text("data:\n  train: {type: datasets/test_cli_tiny_world, split: train}\n")
    monkeypatch.setenv(PLUGINS_ENV, f" {DATASET_MODULE} , {REFINER_MODULE},")
    assert main(["check-data", str(config)]) == 0  # the dataset is built and every item read
    out = capsys.readouterr().out
    assert "data.train:" in out and "no problems found" in out
    assert REFINER_MODULE in sys.modules


def test_plugins_lists_what_a_plugin_module_registers(plugin_dir, capsys):
    assert main(["plugins", "--kind", "refiners", "--plugin", REFINER_MODULE]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "test_cli_argmax" in x)
    assert "local" in line


def test_module_order_and_repeats(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "a,b")
    assert [m for m, _ in plugin_module_names(["b", "c", "a"])] == ["a", "b", "c"]
    assert plugin_module_names([], env="") == []
    assert plugin_module_names(["x"], env="")[0] == ("x", "--plugin 'x'")


@pytest.mark.parametrize("argv, env, message", [
    (["--plugin", "wsss_test_no_such_module"], "",
     r"--plugin 'wsss_test_no_such_module': plugin module 'wsss_test_no_such_module' was not found "
     r"\(searched the installed packages, PYTHONPATH and the current folder"),
    ([], "wsss_test_cli_broken_plugin",
     r"WSSS_KIT_PLUGINS='wsss_test_cli_broken_plugin': importing plugin module 'wsss_test_cli_broken_plugin' "
     r"failed: RuntimeError: no GPU here"),
    (["--plugin", "my_plugins.py"], "",
     r"--plugin 'my_plugins.py': 'my_plugins.py' is not a Python module name; expected a module name, not a "
     r"file: use 'my_plugins'"),
    (["--plugin", "bad-name"], "", r"'bad-name' is not a Python module name"),
])
def test_plugin_module_errors_name_the_module_and_the_cause(plugin_dir, tmp_path, monkeypatch, capsys,
                                                            argv, env, message):
    monkeypatch.setenv(PLUGINS_ENV, env)
    config = _config_with_refiner(tmp_path)
    assert main(["run", str(config), "--dry-run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsss run: error: ")
    assert re.search(message, err), err
    with pytest.raises(PluginError, match=message):
        import_plugin_modules([a for a in argv if a != "--plugin"])


def test_a_missing_dependency_inside_the_module_is_not_reported_as_the_module_missing(plugin_dir):
    (plugin_dir / "wsss_test_cli_needs_dep.py").write_text("import wsss_test_missing_dependency\n")
    with pytest.raises(PluginError, match=r"importing plugin module 'wsss_test_cli_needs_dep' failed: "
                                          r"ModuleNotFoundError: No module named 'wsss_test_missing_dependency'"):
        import_plugin_modules(["wsss_test_cli_needs_dep"])
    sys.modules.pop("wsss_test_cli_needs_dep", None)


def test_current_folder_is_searched(tmp_path, monkeypatch):
    (tmp_path / "wsss_test_cwd_plugin.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    try:
        assert import_plugin_modules(["wsss_test_cwd_plugin"]) == ["wsss_test_cwd_plugin"]
        assert sys.modules["wsss_test_cwd_plugin"].VALUE == 7
        assert sys.path[-1] == str(tmp_path)  # after the installed packages
    finally:
        sys.modules.pop("wsss_test_cwd_plugin", None)


# --------------------------------------------------------------------------- help texts and options
def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_verb_has_a_description_and_an_example():
    verbs = _subparsers()
    assert set(stage_verbs()) | {"plugins", "demo", "run", "cam", "refine", "predict", "eval", "weights",
                                 "check-data"} == set(verbs)
    for verb, parser in verbs.items():
        text = parser.format_help()
        assert parser.description and len(parser.description) > 80, verb
        assert "examples:" in parser.epilog, verb
        assert f"\n  wsss {verb} " in text, verb  # an example command, kept on its own line
        assert "exit status" in text or verb == "plugins", verb


def _options(verb):
    return {s for a in _subparsers()[verb]._actions for s in a.option_strings}


def test_options_are_offered_only_where_they_mean_something():
    for verb, (stage, _) in stage_verbs().items():
        options = _options(verb)
        assert "--restart" in options and "--plugin" in options
        assert ("--shard" in options) == (stage not in ("train_cam", "train_refiner", "train_head")), verb
        assert "--stages" not in options
    assert {"--shard", "--restart", "--stages", "--plugin"} <= _options("run")
    for verb in ("cam", "refine", "predict", "check-data", "weights", "plugins"):
        assert "--plugin" in _options(verb) and "--restart" not in _options(verb), verb
    assert not {"--plugin", "--shard", "--restart"} & _options("eval")


def test_stage_verb_restart_is_a_flag_for_that_stage():
    parser = build_parser()
    args = parser.parse_args(["seeds", "c.yaml", "--restart"])
    assert args.restart == "seeds" and args.shard is None
    assert parser.parse_args(["seeds", "c.yaml"]).restart is None
    args = parser.parse_args(["train-head", "c.yaml"])
    assert args.shard is None and args.restart is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train-head", "c.yaml", "--shard", "0/2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["seeds", "c.yaml", "--restart", "cams"])
    assert parser.parse_args(["run", "c.yaml", "--restart", "cams"]).restart == "cams"


def test_check_data_help_documents_the_exit_codes():
    text = " ".join(_subparsers()["check-data"].format_help().split())
    assert "exit status: 0 when no errors were found (none, or notes only), 1 when at least one error" in text
    assert "2 when the config cannot be read" in text


# --------------------------------------------------------------------------- eval --classes
def _masks(tmp_path):
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="L").save(tmp_path / folder / "a.png")
    return ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]


@pytest.mark.parametrize("classes", ["classes.json", "sub/names"])
def test_eval_refuses_a_class_file_that_does_not_exist(tmp_path, capsys, classes):
    argv = _masks(tmp_path)
    assert main(argv + ["--classes", classes]) == 2
    err = capsys.readouterr().err
    assert f"--classes {classes!r} looks like a file of class names, but {classes} does not exist" in err


def test_eval_reads_a_json_class_list_and_names_a_bad_one(tmp_path, capsys):
    argv = _masks(tmp_path)
    names = tmp_path / "classes.json"
    names.write_text(json.dumps(["background", "cat", "dog"]))
    assert main(argv + ["--classes", str(names)]) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "dog" in out and "mIoU 100.00 over 1 images" in out
    names.write_text(json.dumps({"cat": 1}))
    assert main(argv + ["--classes", str(names)]) == 2
    assert f"--classes file {names} holds a JSON dict; expected a list of class names" in capsys.readouterr().err
    names.write_text("[cat, dog]")
    assert main(argv + ["--classes", str(names)]) == 2
    assert f"--classes file {names} is not valid JSON" in capsys.readouterr().err


def test_eval_still_takes_names_separated_by_commas(tmp_path, capsys):
    assert main(_masks(tmp_path) + ["--classes", "cat,dog"]) == 0
    assert "mIoU 100.00 over 1 images" in capsys.readouterr().out


def test_help_keeps_example_lines_and_wraps_prose():
    text = _subparsers()["run"].format_help()
    assert "\n  wsss run my_run.yaml --stages cams,seeds --shard 0/4   # one of four processes\n" in text
    description = textwrap.dedent(text.split("\n\n")[1])
    assert all(len(line) <= 100 for line in description.splitlines())
