"""A run is checked completely before its first stage writes a file: the run schema, plugin nodes
(built without running), weights and brought-in folders, the run directory and the manifest; the
dry run; and the checks a run makes on what plugins and datasets hand it while it works."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

import wsss_kit
from wsss_kit.cli.main import main
from wsss_kit.data.synthetic import SyntheticDataset
from wsss_kit.errors import ConfigError, DataError, PluginOutputError
from wsss_kit.pipeline import STAGE_TABLE, STAGES, plan_run, run_pipeline
from wsss_kit.pipeline.outputs import check_cam_output, check_refiner_output
from wsss_kit.pipeline.schema import Choice, Float, Int, OneOf, Section, assemble
from wsss_kit.pipeline.validation import settings_diff
from test_pipeline import tiny_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished")
    run_pipeline(tiny_config(), run_dir)
    return run_dir


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- the schema
BAD_SETTINGS = [
    ("cam.trian.steps=5", r"cam\.trian: unknown key \(did you mean 'train'\?\)"),
    ("head.train.stpes=3", r"head\.train has unknown key 'stpes'.*did you mean 'steps'"),
    ("head.infer.flp=true", r"head\.infer\.flp: unknown key \(did you mean 'flip'\?\)"),
    ("seeds.bg_treshold=0.3", r"seeds\.bg_treshold: unknown key \(did you mean 'bg_threshold'\?\)"),
    ("seeds.bg_threshold=7", r"seeds\.bg_threshold must be a number in \[0, 1\]; got 7"),
    ("seeds.bg_threshold=-0.1", r"seeds\.bg_threshold must be a number in \[0, 1\]"),
    ("seed=abc", r"seed must be an integer >= 0; got 'abc'"),
    ("cam.infer.scales=[1.0, 0]", r"cam\.infer\.scales\.1 must be a finite number > 0; got 0"),
    ("cam.infer.batch_size=0", r"cam\.infer\.batch_size must be an integer >= 1; got 0"),
    ("pseudo_masks.batch_size=-2", r"pseudo_masks\.batch_size must be an integer >= 1"),
    ("pseudo_masks.input=masks", r"pseudo_masks\.input must be one of auto, cams, seeds; got 'masks'"),
    ("eval.pictrues=3", r"eval\.pictrues: unknown key \(did you mean 'pictures'\?\)"),
    ("device=gpu", r"device must be one of auto, cpu, cuda, cuda:N, mps; got 'gpu'"),
    ("head.infer.aggregate=avg", r"head\.infer\.aggregate must be one of mean, max; got 'avg'"),
    ("head.infer.crf=nope", r"head\.infer\.crf: unknown CRF parameter set 'nope'"),
    ("cam.train.steps=0", r"cam\.train\.steps must be an integer >= 1; got 0"),
    ("refiner.params=pas", r"refiner \(refiners/dense_crf\): unknown CRF parameter set 'pas'.*did you mean 'psa'"),
    ("head.model.arch=Unett", r"head\.model \(heads/smp\).*unknown smp arch 'Unett'"),
    ("head.loss.type=losses/balanced_cee", r"head\.loss\.type: unknown losses plugin 'balanced_cee'"),
    ("cam.model.backbon=resnet18", r"cam\.model\.backbon: cams/resnet_cam has no keyword 'backbon'"),
    ("refinr.params=psa", r"refinr: unknown key \(did you mean 'refiner'\?\)"),
    ("data.train.num_images=many", r"data\.train"),
]


@pytest.mark.parametrize("setting,message", BAD_SETTINGS, ids=[s for s, _ in BAD_SETTINGS])
def test_a_bad_setting_is_refused_before_anything_is_written(tmp_path, setting, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        run_pipeline(tiny_config([setting]), out)
    assert not out.exists()


def test_every_problem_is_listed_in_one_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        run_pipeline(tiny_config(["cam.trian.steps=5", "seeds.bg_threshold=7", "refiner.params=pas",
                                  "head.infer.flp=1"]), tmp_path / "run")
    text = str(info.value)
    assert "4 problems" in text
    for key in ("cam.trian", "seeds.bg_threshold", "refiner", "head.infer.flp"):
        assert key in text


def test_missing_weights_and_folders_are_listed_together(tmp_path):
    cfg = tiny_config([f"cam.model.checkpoint={tmp_path / 'cam.pt'}", f"seeds.source={tmp_path / 'no_seeds'}"])
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, tmp_path / "run")
    text = str(info.value)
    assert "cam.pt" in text and "no_seeds" in text and "does not exist" in text
    assert not (tmp_path / "run").exists()


def test_the_refusal_takes_seconds(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ConfigError):
        run_pipeline(tiny_config(["head.infer.flp=1"]), tmp_path / "run")
    assert time.perf_counter() - start < 60  # generous for a loaded CI machine; about 2 s here


# --------------------------------------------------------------------------- the run directory
def test_a_run_directory_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        run_pipeline(tiny_config(), path)
    with pytest.raises(ConfigError, match="cannot be made: .* is a file"):
        run_pipeline(tiny_config(), path / "run")


@pytest.mark.parametrize("where", ["/proc/wsss_run", "/dev/null/run", "/sys/run"])
def test_system_folders_are_refused(where):
    with pytest.raises(ConfigError, match="run directory"):
        run_pipeline(tiny_config(), where)


def test_a_complete_run_reruns_without_writing(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    run_pipeline(tiny_config(), run)
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert after == before
    assert capsys.readouterr().out.count("complete, skipped") == len(STAGES)


# --------------------------------------------------------------------------- dry run and plan
def test_dry_run_prints_config_and_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    run_pipeline(tiny_config(), out, dry_run=True)
    text = capsys.readouterr().out
    assert "# resolved config" in text and "# plan" in text and "num_images: 12" in text
    assert "train_cam      run" in text and "train_refiner  nothing to do" in text
    assert not out.exists()


def test_dry_run_of_a_finished_run_says_complete(finished, capsys):
    before = sorted(p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file())
    run_pipeline(tiny_config(), finished, dry_run=True, restart="train_head")
    text = capsys.readouterr().out
    assert "cams           complete" in text and "train_head     restart" in text
    assert sorted(p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()) == before


def test_cli_dry_run_and_print_config(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    from wsss_kit.config import dump_config

    config.write_text(dump_config(tiny_config()))
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "# plan" in capsys.readouterr().out
    assert main(["run", str(config), "--print-config", "--set", "seed=3"]) == 0
    assert "seed: 3" in capsys.readouterr().out
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "--set", "cam.trian.steps=1"]) == 2
    assert "cam.trian" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_plan_lists_pending_stages(finished):
    plan = plan_run(tiny_config(), finished, restart="pseudo_masks")
    assert plan.pending == ["pseudo_masks", "train_head", "eval"]


# --------------------------------------------------------------------------- changed settings
def test_a_typo_on_an_existing_run_is_reported_as_a_typo(finished):
    with pytest.raises(ConfigError) as info:
        run_pipeline(tiny_config(["head.train.stpes=3"]), finished)
    assert "stpes" in str(info.value) and "other settings" not in str(info.value)


def test_changed_settings_name_every_key_and_the_first_stage(finished):
    with pytest.raises(ConfigError) as info:
        run_pipeline(tiny_config(["cam.infer.flip=false", "head.train.lr=0.5"]), finished)
    text = str(info.value)
    assert "stage cams" in text and "cam.infer.flip: True → False" in text and "--restart cams" in text


def test_settings_of_an_old_manifest_come_from_the_resolved_config(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    for entry in manifest["stages"].values():
        entry.pop("settings", None)  # as written before settings were recorded
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"head\.train\.steps: 2 → 5.*--restart train_head"):
        run_pipeline(tiny_config(["head.train.steps=5"]), run)


def test_settings_diff():
    assert settings_diff({"a": {"b": 1, "c": [1]}}, {"a": {"b": 2, "c": [1], "d": 0}}) == ["a.b: 1 → 2",
                                                                                        "a.d: (absent) → 0"]


# --------------------------------------------------------------------------- restart
def test_restart_that_cannot_delete_fails_and_the_old_files_are_never_scored(finished, tmp_path, monkeypatch):
    run = copy_run(finished, tmp_path / "run")

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(ConfigError, match="--restart train_head: cannot delete .*train_head"):
        run_pipeline(tiny_config(["head.train.steps=3"]), run, restart="train_head")
    monkeypatch.undo()
    assert not (run / "results.md").exists()  # the old report no longer describes the run
    with pytest.raises(ConfigError, match="holds files that the run's manifest does not account for"):
        run_pipeline(tiny_config(["head.train.steps=3"]), run)


# --------------------------------------------------------------------------- damaged artifacts
def test_a_truncated_cam_file_is_named_and_recomputed(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    victim = sorted((run / "cams" / "eval").glob("*.npz"))[0]
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 3])
    run_pipeline(tiny_config(), run, restart="seeds")
    assert f"{victim} is damaged" in capsys.readouterr().out
    assert victim.read_bytes() == good
    stages = json.loads((run / "results.json").read_text())
    assert all(stages[s]["complete"] for s in STAGES)


# --------------------------------------------------------------------------- what plugins and datasets hand over
class _NamedDataset(SyntheticDataset):
    """Synthetic scenes whose first item has a hostile name, or whose labels lie."""

    def __init__(self, bad_name: str | None = None, wrong_labels: bool = False, **kw):
        super().__init__(**kw)
        self.wrong_labels = wrong_labels
        self.names = list(self.names)
        if bad_name is not None:
            self.names[0] = bad_name

    def __getitem__(self, index):
        sample = dict(super().__getitem__(index))
        sample["name"] = self.names[index]
        if self.wrong_labels and index == 1:
            sample["labels"] = 1.0 - sample["labels"]
        return sample


@pytest.fixture
def hostile_dataset():
    wsss_kit.register("datasets", "test_hostile", _NamedDataset)
    yield "datasets/test_hostile"
    wsss_kit.registry.default_registry().unregister("datasets", "test_hostile")


@pytest.mark.parametrize("name", ["../escape", "/etc/x", "a/b", "..", "with\\backslash"])
def test_item_names_that_would_leave_the_run_directory_are_refused(tmp_path, hostile_dataset, name):
    cfg = tiny_config([f"data.train.type={hostile_dataset}", f"data.train.bad_name={json.dumps(name)}"])
    with pytest.raises(ConfigError, match="would leave its folder"):
        run_pipeline(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "escape.png").exists()


def test_labels_that_disagree_with_the_mask_stop_the_run_naming_the_item(tmp_path, hostile_dataset):
    cfg = tiny_config([f"data.train.type={hostile_dataset}", "data.train.wrong_labels=true"])
    with pytest.raises(DataError, match=r"data\.train: item 1 \('train_00001'\): labels and ground-truth mask disagree"):
        run_pipeline(cfg, tmp_path / "run")


class _BadCAM(torch.nn.Module):
    def cams(self, images, labels, scales=(1.0,), flip=False):
        return self.out(images, labels)


@pytest.mark.parametrize("make,message", [
    (lambda im, lab: torch.full((im.shape[0], lab.shape[1], *im.shape[-2:]), float("nan")), "non-finite CAMs"),
    (lambda im, lab: lab[:, :, None, None] * 3.0 + torch.zeros(1, 1, *im.shape[-2:]), r"CAM values in \[0, 3\]"),
    (lambda im, lab: torch.ones(im.shape[0], lab.shape[1], *im.shape[-2:]), "absent from the image's labels"),
    (lambda im, lab: torch.zeros(im.shape[0], lab.shape[1], 3, 3), r"shape \(1, 5, 3, 3\)"),
    (lambda im, lab: torch.zeros(im.shape[0], lab.shape[1], *im.shape[-2:], dtype=torch.long), "dtype torch.int64"),
])
def test_plugin_cams_are_checked_before_they_are_stored(make, message):
    model = _BadCAM()
    model.out = make
    images, labels = torch.rand(1, 3, 8, 8), torch.tensor([[1.0, 0, 0, 0, 0]])
    with pytest.raises(PluginOutputError, match=message) as info:
        check_cam_output(model, model.cams(images, labels), labels, (8, 8), ["img0"])
    assert "_BadCAM" in str(info.value) and "'img0'" in str(info.value)


def test_refiner_outputs_are_checked():
    probs = torch.full((1, 6, 4, 4), 1 / 6)
    assert check_refiner_output(object(), probs, 5, (4, 4), ["a"]).shape == (1, 4, 4)
    with pytest.raises(PluginOutputError, match="non-finite probabilities"):
        check_refiner_output(object(), probs * float("nan"), 5, (4, 4), ["a"])
    with pytest.raises(PluginOutputError, match=r"mask values \[9\]"):
        check_refiner_output(object(), torch.full((1, 4, 4), 9), 5, (4, 4), ["a"])
    assert check_refiner_output(object(), torch.full((1, 4, 4), 255), 5, (4, 4), ["a"]).max() == 255


class _NaNRefiner(wsss_kit.Refiner):
    wsss_api_version = "1.0"

    def refine(self, images, cams, labels):
        return torch.full((cams.shape[0], cams.shape[1] + 1, *cams.shape[-2:]), float("nan"))


def test_a_refiner_giving_nan_stops_the_run_and_writes_no_mask(finished, tmp_path):
    wsss_kit.register("refiners", "test_nan", _NaNRefiner)
    try:
        run = copy_run(finished, tmp_path / "run")
        with pytest.raises(PluginOutputError, match="non-finite probabilities"):
            run_pipeline(tiny_config(["refiner={type: refiners/test_nan}"]), run, restart="train_refiner")
        assert list((run / "pseudo_masks").rglob("*.png")) == []
    finally:
        wsss_kit.registry.default_registry().unregister("refiners", "test_nan")


# --------------------------------------------------------------------------- the schema and the stage table
def test_schema_pieces():
    section = Section({"steps": Int(1), "mode": Choice(("a", "b")), "t": OneOf((Choice(("auto",)), Float(0, 1)))},
                      required=("steps",))
    assert section.check({"steps": 2, "mode": "a", "t": "auto"}, "x") == []
    assert section.check({"steps": 2, "t": 0.5}, "x") == []
    assert section.check({"mode": "c"}, "x") == ["x.mode must be one of a, b; got 'c'", "x.steps is required "
                                                 "(an integer >= 1)"]
    assert section.check({"steps": True}, "x") == ["x.steps must be an integer >= 1; got True"]
    assert section.check({"steps": 1, "t": 2}, "x") == ["x.t must be a number in [0, 1]; got 2"]
    tree = assemble([("a.b", Int(), False), ("a.c", Int(), True), ("d", Int(), False)])
    assert tree.check({"a": {"b": 1}}, "") == ["a.c is required (an integer)"]
    with pytest.raises(ValueError, match="declared twice"):
        assemble([("a", Int(), False), ("a", Float(), False)])


def test_the_stage_table_drives_the_cli_and_the_folders():
    from wsss_kit.cli.main import build_parser, stage_verbs

    assert [s.name for s in STAGE_TABLE] == list(STAGES)
    verbs = stage_verbs()
    assert {v[0] for v in verbs.values()} == set(STAGES)
    parser = build_parser()
    for verb in verbs:
        assert parser.parse_args([verb, "x.yaml"]).command == verb
    folders = [f for s in STAGE_TABLE for f in s.folders]
    assert len(folders) == len(set(folders))
    assert sum(s.trains for s in STAGE_TABLE) == 3


def test_a_run_directory_that_cannot_be_written_is_refused_before_work(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ConfigError, match="run directory .* cannot be written .*Read-only file system"):
        run_pipeline(tiny_config(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_temporary_files_of_interrupted_writes_are_removed_on_the_next_run(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    stale = [run / "train_head" / ".checkpoint.pt.k3x9q2za.tmp", run / "cams" / "eval" / ".a.npz.0a1b2c3d.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    keep = run / "cams" / "eval" / "notes.tmp"  # not the writer's pattern: never touched
    keep.write_text("mine")
    run_pipeline(tiny_config(), run, restart="eval")
    assert not any(p.exists() for p in stale) and keep.exists()
    assert "left by an interrupted write" in capsys.readouterr().out


def test_a_network_given_by_a_checkpoint_needs_no_training_sections():
    from wsss_kit.pipeline.validation import schema_problems

    cfg = tiny_config()
    del cfg["head"]["train"], cfg["head"]["loss"], cfg["cam"]["train"]
    problems = schema_problems(cfg)
    for key in ("head.train", "head.loss", "cam.train"):
        assert any(p.startswith(f"{key} is required") for p in problems), key
    cfg["head"]["model"]["checkpoint"] = "head.pt"
    cfg["cam"]["model"]["checkpoint"] = "cam.pt"
    assert schema_problems(cfg) == []
