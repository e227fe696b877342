"""The reproduction harness (`python -m benchmarks reproduce`): a table's runs resolved, checked before
anything runs, chained, resumed, and scored into results.csv / results.md / results.png / manifest.json;
`--smoke` for every table of benchmarks/tables."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.reproduce import format_results, reproduce, smoke_config
from benchmarks.reproduce.cli import main as reproduce_main
from benchmarks.reproduce.resolve import resolve_table, stages_with_work, validate_runs
from benchmarks.reproduce.results import CSV_COLUMNS
from benchmarks.reproduce.smoke import SMOKE_IMAGE_SIZE, SMOKE_STEPS
from benchmarks.tables.schema import Input, Row, Run, Table
from wsss_kit.config import load_config
from wsss_kit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("weakclip_table1", "weakclip_table4", "weakclip_table5", "weakclip_table7", "weakclip_table8", "pole_table1",
            "pole_table3", "pole_table4", "mctformer_voc", "irn_voc")

# A chain like the papers' (seeds → refiner → pseudo masks → head) plus a command run reading an
# earlier run's folder, on the configs of benchmarks/ reduced by --smoke.
PROBE = ("import json, pathlib, sys; d = pathlib.Path(sys.argv[2]); d.mkdir(parents=True, exist_ok=True); "
         "cfg = pathlib.Path(sys.argv[1]).read_text(); n = len(list(pathlib.Path(sys.argv[3]).glob('*.png'))); "
         "(d / 'probe.json').write_text(json.dumps({'seeds': n, 'synthetic': 'datasets/synthetic' in cfg}))")
CHAIN = Table(
    "test_chain", "Test chain: seeds, WeakCLIP pseudo masks, a retrained head", "none",
    runs=(
        Run("seeds", "cams/synthetic_resnet_cam.yaml", ("train_cam", "cams", "seeds")),
        Run("probe", "cams/synthetic_resnet_cam.yaml",
            command=("python", "-c", PROBE, "{config}", "{run_dir}/out", "{run:seeds}/seeds/train")),
        Run("refine", "weakclip/synthetic.yaml", ("seeds", "train_refiner", "pseudo_masks"),
            overrides=("cam=null",), smoke=("refiner.restrict_to_labels=true",),
            inputs=(Input("seeds.source.train", "seeds", "seeds/train"),
                    Input("seeds.source.eval", "seeds", "seeds/eval"))),
        Run("head", "deeplab/synthetic.yaml", None, overrides=("cam=null", "refiner=null", "seeds=null"),
            inputs=(Input("pseudo_masks.source.train", "refine", "pseudo_masks/train"),)),
    ),
    rows=(
        Row("CAM", "mIoU", 50.0, "VOC2012", "train", "seeds", "cams.eval.miou"),
        Row("pseudo masks", "mIoU", 60.0, "VOC2012", "train", "refine", "pseudo_masks.eval.miou",
            per_class={"background": 80.0, "ball": 50.0, "aeroplane": 40.0}),
        Row("head", "mIoU", 70.0, "VOC2012", "val", "head", "eval.eval.miou"),
        Row("test server", "mIoU", 71.0, "VOC2012", "test", None, None, why_not="no public test masks"),
    ))


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def test_list_prints_the_table_ids_one_per_line():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "reproduce", "--list"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert ids == out.stdout.strip().split("\n")  # one id per line, nothing else
    assert set(REQUIRED) <= set(ids)


def test_unknown_table_lists_the_ids(capsys, tmp_path):
    assert reproduce_main(["weakclip_tabel1", "--smoke", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown table 'weakclip_tabel1'" in err and "did you mean 'weakclip_table1'" in err
    assert all(t in err for t in REQUIRED)
    assert not (tmp_path / "o").exists()


def test_data_root_is_required_and_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="--data-root is required"):
        reproduce(CHAIN, tmp_path / "o")
    with pytest.raises(ConfigError, match=r"--data-root '.*nowhere' does not exist; expected the folder"):
        reproduce(CHAIN, tmp_path / "o", data_root=tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        reproduce(CHAIN, tmp_path / "o", data_root=tmp_path / "file")
    with pytest.raises(ConfigError, match="--weights-dir"):
        reproduce(CHAIN, tmp_path / "o", smoke=True, weights_dir=tmp_path / "nowhere")
    assert not (tmp_path / "o").exists()


def test_input_naming_a_later_run_is_refused(tmp_path):
    runs = (CHAIN.runs[0], CHAIN.runs[3], CHAIN.runs[2])  # head reads refine, which now comes after it
    table = Table("bad_order", "t", "p", runs=runs, rows=())
    with pytest.raises(ConfigError, match=r"run 'head': input pseudo_masks.source.train reads run 'refine', "
                                          r"which is not an earlier run .*comes later.*earlier runs: seeds"):
        reproduce(table, tmp_path / "o", smoke=True)
    assert not (tmp_path / "o").exists()


def test_placeholder_naming_an_unknown_run_and_rows_naming_unknown_runs_are_refused(tmp_path):
    bad_cmd = Table("t", "t", "p", runs=(Run("a", "cams/synthetic_resnet_cam.yaml", command=("wsss", "{run:zz}")),),
                    rows=())
    with pytest.raises(ConfigError, match=r"run 'a': command argument '\{run:zz\}' names run 'zz'"):
        resolve_table(bad_cmd, tmp_path, smoke=True)
    bad_row = Table("t", "t", "p", runs=CHAIN.runs[:1], rows=(Row("r", "mIoU", 1.0, "VOC2012", "val", "nope", "x"),))
    with pytest.raises(ConfigError, match=r"row 'r': run 'nope' is not a run of the table \(runs: seeds\)"):
        resolve_table(bad_row, tmp_path, smoke=True)
    dup = Table("t", "t", "p", runs=(CHAIN.runs[0], CHAIN.runs[0]), rows=())
    with pytest.raises(ConfigError, match="two runs are named 'seeds'"):
        resolve_table(dup, tmp_path, smoke=True)
    missing = Table("t", "t", "p", runs=(Run("a", "cams/nope.yaml"),), rows=())
    with pytest.raises(ConfigError, match=r"run 'a': config 'cams/nope.yaml' not found"):
        resolve_table(missing, tmp_path, smoke=True)


def test_a_typo_in_a_later_run_fails_before_the_first_run_starts(tmp_path):
    runs = (CHAIN.runs[0], Run("refine", "weakclip/synthetic.yaml", CHAIN.runs[2].stages,
                                overrides=("cam=null", "refiner.decodr_channels=8"), inputs=CHAIN.runs[2].inputs))
    table = Table("typo", "t", "p", runs=runs, rows=())
    with pytest.raises(ConfigError, match=r"run 'refine' \(weakclip/synthetic.yaml\).*decodr_channels.*"
                                          r"did you mean 'decoder_channels'"):
        reproduce(table, tmp_path / "o", smoke=True)
    assert not (tmp_path / "o" / "runs").exists()  # nothing ran


def test_a_missing_weight_file_of_a_late_run_fails_before_the_first_run_starts(tmp_path, monkeypatch):
    """The WeakCLIP run reads seeds an earlier run has yet to write (so it cannot be planned in full), but
    its CLIP file is checked up front; a file the chaining brings is not asked for."""
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path / "weights"))
    (tmp_path / "data").mkdir()
    runs = (Run("seeds", "mctformer/voc_v2.yaml", ("train_cam", "cams", "seeds")),
            Run("weakclip", "weakclip/voc.yaml", ("seeds", "train_refiner", "pseudo_masks"),
                inputs=(Input("seeds.source.train", "seeds", "seeds/train"),
                        Input("seeds.source.eval", "seeds", "seeds/eval"),
                        Input("refiner.clip_weights", "seeds", "clip.pt"))),
            Run("baseline", "resnet_cam/voc.yaml",
                command=("wsss", "cam", "{config}", "--checkpoint", "released:irn_res50_cam", "--out", "{run_dir}")))
    resolved = resolve_table(Table("w", "t", "p", runs=runs, rows=()), tmp_path / "o", data_root=tmp_path / "data")
    with pytest.raises(ConfigError) as info:
        validate_runs(resolved)
    msg = str(info.value)
    assert "run 'seeds' (mctformer/voc_v2.yaml): cam.model.weights" in msg and "deit_small_patch16_224" in msg
    assert "run 'baseline' (resnet_cam/voc.yaml)" in msg and "res50_cam.pth" in msg
    assert "run 'weakclip'" not in msg  # its only weight file comes from the chaining
    runs = runs[:1] + (Run("weakclip", "weakclip/voc.yaml", ("seeds", "train_refiner", "pseudo_masks"),
                           inputs=runs[1].inputs[:2]),)
    with pytest.raises(ConfigError, match=r"run 'weakclip' \(weakclip/voc.yaml\): refiner.clip_weights.*ViT-B-16.pt"):
        validate_runs(resolve_table(Table("w", "t", "p", runs=runs, rows=()), tmp_path / "o",
                                    data_root=tmp_path / "data"))


def test_real_runs_join_relative_data_roots_to_the_data_root(tmp_path):
    table = Table("t", "t", "p", runs=(Run("mct", "mctformer/voc_v2.yaml"),
                                       Run("wc", "weakclip/voc.yaml", inputs=(Input("seeds.source.train", "mct", "seeds/train"),))),
                  rows=())
    runs = resolve_table(table, tmp_path / "out", data_root=tmp_path)
    assert runs[0].cfg["data"]["train"]["root"] == str(tmp_path / "VOCdevkit")
    assert runs[0].cfg["data"]["eval"]["type"] == "datasets/voc2012"
    assert runs[1].cfg["seeds"]["source"]["train"] == str(runs[0].run_dir / "seeds" / "train")
    assert runs[0].run_dir.parent == (tmp_path / "out" / "runs").resolve()
    assert runs[0].run_dir.name.startswith("mct-") and runs[0].cfg["run_dir"] == str(runs[0].run_dir)
    assert runs[0].stages == ["train_cam", "cams", "seeds"]  # a CAM-only config stops at the seeds
    # another data root is another run folder; the same table resolved again is the same folder
    other = resolve_table(table, tmp_path / "out", data_root=tmp_path / "x")
    assert other[0].run_dir != runs[0].run_dir and other[1].run_dir != runs[1].run_dir
    assert resolve_table(table, tmp_path / "out", data_root=tmp_path)[1].run_dir == runs[1].run_dir
    # the datasets are checked before anything runs: no VOC here
    with pytest.raises(ConfigError, match="no PASCAL VOC 2012 data found"):
        validate_runs(runs)


def test_smoke_reduces_data_models_and_steps_but_keeps_inputs(tmp_path):
    cfg = smoke_config(load_config(ROOT / "benchmarks" / "weakclip" / "voc.yaml"))
    assert cfg["data"]["train"] == {"type": "datasets/synthetic", "split": "train", "num_images": 12,
                                    "image_size": SMOKE_IMAGE_SIZE}
    assert cfg["data"]["eval"]["split"] == "val"
    ref = cfg["refiner"]
    assert (ref["clip_model"], ref["clip_weights"], ref["scales"], ref["flip"]) == ("wsss-tiny-clip", None, [1.0], False)
    assert ref["preset"] == "official" and ref["crf"] == "weakclip_voc"  # what is not a size stays
    assert cfg["refiner_train"]["steps"] == SMOKE_STEPS and cfg["refiner_train"]["batch_size"] <= 4
    assert cfg["refiner_augment"]["crop_size"] == SMOKE_IMAGE_SIZE
    pole = smoke_config(load_config(ROOT / "benchmarks" / "pole" / "table1_pole.yaml"))["cam"]["model"]
    assert pole["backbone"] == "resnet18" and pole["init_checkpoint"] is None and pole["selection_cache"] is None
    assert set(pole["synonyms"]["synonyms"]) == {"ball", "box", "kite", "boat", "tree"}
    # an Input is applied after the reduction: the chained file survives it
    table = Table("t", "t", "p", runs=(Run("a", "cams/synthetic_resnet_cam.yaml"),
                                       Run("b", "pole/table1_pole.yaml", smoke=("cam.train.steps=3",),
                                           inputs=(Input("cam.model.selection_cache", "a", "sel.json"),))), rows=())
    b = resolve_table(table, tmp_path, smoke=True)[1]
    assert b.cfg["cam"]["model"]["selection_cache"] == str(tmp_path.resolve() / "runs" / f"a-{resolve_table(table, tmp_path, smoke=True)[0].digest}" / "sel.json")
    assert b.cfg["cam"]["train"]["steps"] == 3  # Run.smoke on top of the reduction
    assert stages_with_work(b.cfg) == ["train_cam", "cams", "seeds", "train_refiner", "pseudo_masks"]


@pytest.fixture(scope="module")
def chain_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    lines: list[str] = []
    measured = reproduce(CHAIN, out, smoke=True, echo=lines.append)
    return out, measured, lines


def test_smoke_chain_runs_end_to_end_and_writes_the_four_outputs(chain_out):
    out, measured, lines = chain_out
    folder = out / "test_chain"
    assert [line.split(":")[0] for line in lines] == ["[1/4] seeds", "[1/4] seeds", "[2/4] probe", "[2/4] probe",
                                                      "[3/4] refine", "[3/4] refine", "[4/4] head", "[4/4] head"]
    assert "ran train_cam, cams, seeds" in lines[1] and "ran seeds, train_refiner, pseudo_masks" in lines[5]
    with open(folder / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[:6] == ("table", "row", "metric", "paper", "measured", "delta")
    assert [r["row"] for r in rows] == ["CAM", "pseudo masks", "head", "test server"]
    for r in rows[:3]:
        assert 0.0 <= float(r["measured"]) <= 100.0
        assert float(r["delta"]) == pytest.approx(float(r["measured"]) - float(r["paper"]), abs=0.051)
    assert rows[3]["measured"] == "" and rows[3]["reason"] == "no public test masks"
    # measured = the run manifest's fraction, in percent with one decimal
    run_manifest = json.loads((folder / "runs" / "head" / "manifest.json").read_text())
    assert float(rows[2]["measured"]) == round(100 * run_manifest["stages"]["eval"]["eval"]["miou"], 1)
    md = (folder / "results.md").read_text().splitlines()
    assert md[0].startswith("**SMOKE RUN") and "meaningless" in md[0]
    assert any(line.startswith("| pseudo masks | mIoU | VOC2012 train |") for line in md)
    assert "## Per-class IoU: pseudo masks" in md and any(line.startswith("| aeroplane | 40 | - |") for line in md)
    pseudo = measured[1]
    assert set(pseudo.per_class) == {"background", "ball"}  # aeroplane is not a synthetic class
    with Image.open(folder / "results.png") as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 300
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == ["seeds", "probe", "refine", "head"]
    assert manifest["smoke"] is True and manifest["provenance"]["git"] is not None
    assert "wsss_kit" in manifest["provenance"] and manifest["machine"]["cpus"] >= 1
    seeds = manifest["runs"][0]
    assert set(seeds["stages"]) >= {"train_cam", "cams", "seeds"} and seeds["stages"]["train_cam"]["wall_seconds"] > 0
    assert seeds["resolved_config"]["data"]["train"]["type"] == "datasets/synthetic"
    refine = manifest["runs"][2]["resolved_config"]
    assert refine["seeds"]["source"]["train"] == os.path.join(seeds["run_dir"], "seeds", "train")
    # the command run: resolved config written, placeholders filled, its output in its folder
    probe = json.loads((folder / "runs" / "probe" / "out" / "probe.json").read_text())
    assert probe == {"seeds": 12, "synthetic": True}
    assert (folder / "runs" / "probe" / "config.reproduce.yaml").exists()
    assert "ran train_cam" not in format_results(measured)


def test_smoke_chain_resumes_without_recomputing(chain_out):
    out, _, _ = chain_out
    folder = out / "test_chain"
    manifests = sorted((out / "runs").glob("*/manifest.json")) + sorted((out / "runs").glob("*/reproduce_done.json"))
    before = {p: p.read_bytes() for p in manifests}
    lines: list[str] = []
    reproduce(CHAIN, out, smoke=True, echo=lines.append)
    assert {p: p.read_bytes() for p in manifests} == before
    assert sum("already complete, nothing to do" in line for line in lines) == 4
    assert json.loads((folder / "manifest.json").read_text())["runs"][0]["status"] == "complete"


def _table_ids() -> list:
    from benchmarks.tables import TABLES

    # an embedded-only table's smoke (10 runs, ~1-5 min) runs with -m slow; its plumbing is also covered by
    # tests/test_reproduce_embedded.py
    return [pytest.param(t, marks=pytest.mark.slow) if TABLES[t].embedded_only else t for t in sorted(TABLES)]


# Every table runs in the default suite: each smokes in 4-40 s on 2 idle cores, about 4 minutes together
# (benchmarks/results/reproduce_smoke.json holds every table's smoke wall time).
@pytest.mark.parametrize("table_id", _table_ids())
def test_every_table_runs_with_smoke(table_id, tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "reproduce", table_id, "--smoke", "--out", str(tmp_path)],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    folder = tmp_path / table_id
    with open(folder / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and tuple(rows[0])[:6] == ("table", "row", "metric", "paper", "measured", "delta")
    for row in rows:  # every row the toolkit can produce has a number, every other one a reason
        if row["run"]:
            assert 0.0 <= float(row["measured"]) <= 100.0, row
            if row["paper"]:  # an embedded claim's row has no paper number, so no delta
                assert float(row["delta"]) == pytest.approx(float(row["measured"]) - float(row["paper"]), abs=0.051), row
            else:
                assert row["delta"] == "", row
        else:
            assert row["measured"] == "" and row["reason"], row
    for name in ("results.md", "results.png", "manifest.json"):
        assert (folder / name).stat().st_size > 0
    assert (folder / "results.md").read_text().startswith("**SMOKE RUN")


def test_a_run_folder_in_use_by_another_harness_is_refused_and_then_resumed(chain_out):
    """Two harnesses on one --out: the second stops at the shared run folder the first holds, naming it,
    and writes nothing into it; once the lock is free the same call resumes."""
    from benchmarks.reproduce.execute import ReproduceRunError, run_lock

    out, _, _ = chain_out
    seeds_dir = next(p for p in (out / "runs").iterdir() if p.is_dir() and p.name.startswith("seeds-"))
    manifest = (seeds_dir / "manifest.json").read_bytes()
    with run_lock(seeds_dir):
        with pytest.raises(ReproduceRunError, match=rf"run folder {seeds_dir} is in use by pid {os.getpid()}"):
            reproduce(CHAIN, out, smoke=True, echo=lambda line: None)
    assert (seeds_dir / "manifest.json").read_bytes() == manifest
    lines: list[str] = []
    reproduce(CHAIN, out, smoke=True, echo=lines.append)
    assert sum("already complete, nothing to do" in line for line in lines) == 4


def test_an_interrupted_reproduce_says_how_to_resume(monkeypatch, capsys):
    import benchmarks.reproduce as harness

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "reproduce", interrupted)
    assert reproduce_main(["irn_voc", "--smoke"]) == 130
    assert "interrupted; rerun the same command to resume" in capsys.readouterr().err
