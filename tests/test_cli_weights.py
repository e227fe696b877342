"""``wsss weights CONFIG`` / ``--list`` and :func:`wsss_kit.weights.required_weights`: what a config
needs, present or missing, plugin defaults, checkpoint-replaced files, SHA-256 checks, exit codes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

import wsss_kit
from wsss_kit.cli.main import main
from wsss_kit.config import load_config
from wsss_kit.registry import default_registry
from wsss_kit.weights import (
    RELEASED,
    ReleasedCheckpoint,
    list_released,
    required_weights,
)


def _net(num_classes: int = 2, weights: str | None = "released:irn_res50_cam", checkpoint: str | None = None,
         clip_model: str = "ViT-B-16", clip_weights: str | None = "default", encoder_weights: str | None = None,
         scale: float = 1.0) -> object:
    """A factory whose defaults name weights (it is never called: the walk reads its signature)."""
    raise AssertionError("wsss weights must not build plugins")


_net.checkpoint_replaces = ("weights", "clip_weights")  # type: ignore[attr-defined]


def _plain(num_classes: int = 2, weights: str | None = "released:irn_res50_cam", checkpoint: str | None = None) -> object:
    raise AssertionError("wsss weights must not build plugins")


@pytest.fixture
def plugins():
    wsss_kit.register("cams", "test_weights_net", _net)
    wsss_kit.register("cams", "test_weights_plain", _plain)
    yield
    default_registry().unregister("cams", "test_weights_net")
    default_registry().unregister("cams", "test_weights_plain")


@pytest.fixture
def wdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # an empty cache: no tag is cached
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    return folder


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def _json_rows(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[dict]]:
    code = main(argv + ["--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_present_and_missing_released_files(plugins, wdir, tmp_path, capsys):
    cfg = _config(tmp_path, """
cam:
  model: {type: cams/test_weights_plain, weights: released:irn_res50_cam}
refiner: {type: cams/test_weights_plain, weights: released:psa_res38_aff}
""")
    (wdir / RELEASED["irn_res50_cam"].filename).write_bytes(b"cam network")
    code, rows = _json_rows(capsys, ["weights", cfg])
    assert code == 1
    by_key = {r["key"]: r for r in rows}
    assert set(by_key) == {"cam.model.weights", "refiner.weights"}
    present, missing = by_key["cam.model.weights"], by_key["refiner.weights"]
    assert present["status"] == "present" and present["released"] == "irn_res50_cam"
    assert present["filename"] == "res50_cam.pth" and present["location"] == str(wdir / "res50_cam.pth")
    assert present["sha256"] is None and "CLIMS" in present["source"] and not present["missing"]
    assert missing["status"] == "missing" and missing["missing"] and missing["location"] == str(wdir / "res38_aff.pth")
    # text output names the missing key, the file and "unknown" for the SHA-256
    assert main(["weights", cfg]) == 1
    text = capsys.readouterr().out
    assert "refiner.weights  released:psa_res38_aff  [MISSING]" in text and "res38_aff.pth" in text
    assert "sha256    unknown" in text and "1 of 2 missing" in text
    # the missing file arrives: exit 0
    (wdir / "res38_aff.pth").write_bytes(b"affinity")
    assert main(["weights", cfg]) == 0
    assert "all present" in capsys.readouterr().out


def test_plugin_defaults_are_discovered(plugins, wdir, tmp_path):
    cfg = load_config(_config(tmp_path, """
cam:
  model: {type: cams/test_weights_net, scale: 2.0}
head: {type: cams/test_weights_net, weights: null, clip_model: wsss-tiny-clip, encoder_weights: imagenet}
other: {type: cams/test_weights_plain, weights: "default"}
"""))
    rows = {r.key: r for r in required_weights(cfg)}
    # left out: weights and clip_weights come from the factory; "default" means the released CLIP of clip_model
    assert rows["cam.model.weights"].spec == "released:irn_res50_cam" and rows["cam.model.weights"].origin == "default"
    assert rows["cam.model.clip_weights"].spec == "released:clip_vit_b16_openai"
    assert rows["cam.model.clip_weights"].sha256 == RELEASED["clip_vit_b16_openai"].sha256
    # weights: null is random init (nothing needed); the tiny CLIP's default is random init; smp's tag is the
    # plugin's own business
    assert "head.weights" not in rows and "head.clip_weights" not in rows
    assert rows["head.encoder_weights"].status == "not checked" and not rows["head.encoder_weights"].missing
    # a bare word under a weights keyword is the plugin's own tag
    assert rows["other.weights"].status == "not checked"
    assert len(rows) == 4
    # clip_weights='default' for an architecture without a default fails now, as the build would
    cfg["head"]["clip_model"] = "RN50"
    bad = {r.key: r for r in required_weights(cfg)}["head.clip_weights"]
    assert bad.status == "invalid" and "'RN50'" in bad.detail and "ViT-B-16" in bad.detail


def test_checkpoint_replaces_backbone_files(plugins, wdir, tmp_path):
    ckpt = tmp_path / "trained.pth"
    ckpt.write_bytes(b"trained")
    cfg = load_config(_config(tmp_path, f"""
cam:
  model: {{type: cams/test_weights_net, checkpoint: {ckpt}}}
refiner: {{type: cams/test_weights_plain, checkpoint: {ckpt}}}
"""))
    rows = {r.key: r for r in required_weights(cfg)}
    assert rows["cam.model.checkpoint"].status == "present" and rows["cam.model.checkpoint"].location == str(ckpt)
    assert rows["cam.model.weights"].status == "not needed (checkpoint given)" and not rows["cam.model.weights"].missing
    assert rows["cam.model.clip_weights"].status == "not needed (checkpoint given)"
    # a plugin that does not declare checkpoint_replaces still needs its backbone file
    assert rows["refiner.weights"].status == "missing"


def test_specs_anywhere_paths_and_hub_tags(plugins, wdir, tmp_path, capsys):
    twin = tmp_path / "elsewhere" / RELEASED["clip_vit_b32_openai"].filename
    twin.parent.mkdir()
    twin.write_bytes(b"x")
    cfg = _config(tmp_path, f"""
cam:
  model: {{type: cams/test_weights_plain, weights: timm:resnet18.a1_in1k}}
extra:
  init: [released:deit_small_imagenet, {twin}]
  note: not a weights file
  run: runs/x/model.pt
  selection_cache: runs/x/selection.json
""")
    code, rows = _json_rows(capsys, ["weights", cfg])
    by_key = {r["key"]: r for r in rows}
    assert set(by_key) == {"cam.model.weights", "extra.init.0", "extra.init.1", "extra.run"}
    assert by_key["cam.model.weights"]["status"] == "not cached" and by_key["cam.model.weights"]["missing"]
    assert by_key["extra.init.0"]["released"] == "deit_small_imagenet" and by_key["extra.init.0"]["sha256"] == "cd65a155"
    # a path whose file name is a released file's is matched to it (so --verify can check it)
    assert by_key["extra.init.1"]["released"] == "clip_vit_b32_openai" and by_key["extra.init.1"]["status"] == "present"
    assert by_key["extra.run"]["status"] == "missing"
    assert code == 1


def test_a_cached_hub_tag_is_present_offline(plugins, wdir, tmp_path, capsys):
    snapshot = tmp_path / "hf" / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    cfg = _config(tmp_path, "cam: {model: {type: cams/test_weights_plain, weights: timm:resnet18.a1_in1k}}\n")
    code, rows = _json_rows(capsys, ["weights", cfg])
    assert code == 0 and rows[0]["status"] == "cached" and not rows[0]["missing"]


def test_verify_reports_a_wrong_sha(plugins, wdir, tmp_path, monkeypatch, capsys):
    data = b"tiny released weights"
    good = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(RELEASED, "tiny_ok", ReleasedCheckpoint("tiny_ok.pt", "a test", "tests", good[:8]))
    monkeypatch.setitem(RELEASED, "tiny_bad", ReleasedCheckpoint("tiny_bad.pt", "a test", "tests", "0" * 64))
    (wdir / "tiny_ok.pt").write_bytes(data)
    (wdir / "tiny_bad.pt").write_bytes(data)
    (wdir / "res50_cam.pth").write_bytes(data)
    cfg = _config(tmp_path, """
a: {type: cams/test_weights_plain, weights: released:tiny_ok}
b: {type: cams/test_weights_plain, weights: released:tiny_bad}
c: {type: cams/test_weights_plain}
""")
    assert main(["weights", cfg]) == 0  # all present; nothing hashed without --verify
    capsys.readouterr()
    code, rows = _json_rows(capsys, ["weights", cfg, "--verify"])
    by_key = {r["key"]: r for r in rows}
    assert code == 1
    assert by_key["a.weights"]["verified"] == "ok" and by_key["a.weights"]["actual_sha256"] == good
    assert by_key["b.weights"]["verified"] == "mismatch" and by_key["b.weights"]["actual_sha256"] == good
    assert by_key["c.weights"]["verified"] == "no reference" and by_key["c.weights"]["origin"] == "default"
    assert main(["weights", cfg, "--verify"]) == 1
    text = capsys.readouterr().out
    assert f"verified  mismatch (file has {good})" in text and "1 of 3 missing or wrong: b.weights" in text


def test_config_errors_exit_2(plugins, wdir, tmp_path, capsys):
    assert main(["weights", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad_type = _config(tmp_path, "cam: {model: {type: cams/no_such_net_xyz}}\n")
    assert main(["weights", bad_type]) == 2
    assert "no_such_net_xyz" in capsys.readouterr().err
    unknown = _config(tmp_path, "cam: {model: {type: cams/test_weights_plain, weights: released:irn_res50_cm}}\n")
    assert main(["weights", unknown]) == 2
    err = capsys.readouterr().err
    assert "cam.model.weights" in err and "irn_res50_cam" in err  # names the key and the close match
    assert main(["weights"]) == 2 and "--list" in capsys.readouterr().err
    assert main(["weights", unknown, "--list"]) == 2


def test_csv_rows(plugins, wdir, tmp_path, capsys):
    cfg = _config(tmp_path, "a: {type: cams/test_weights_plain, weights: released:clip_vit_b32_openai}\n"
                            "b: {type: cams/test_weights_plain}\n")
    assert main(["weights", cfg, "--format", "csv"]) == 1
    rows = {r["key"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["a.weights"]["sha256"] == RELEASED["clip_vit_b32_openai"].sha256 and rows["a.weights"]["missing"] == "True"
    assert rows["b.weights"]["sha256"] == "unknown" and rows["b.weights"]["origin"] == "default"
    assert rows["b.weights"]["filename"] == "res50_cam.pth" and rows["b.weights"]["status"] == "missing"


def test_set_overrides_apply(plugins, wdir, tmp_path, capsys):
    cfg = _config(tmp_path, "cam: {model: {type: cams/test_weights_plain}}\n")
    code, rows = _json_rows(capsys, ["weights", cfg, "--set", "cam.model.weights=released:weakclip_voc"])
    assert code == 1 and [r["spec"] for r in rows] == ["released:weakclip_voc"]


def test_list_holds_every_released_entry(capsys):
    names = sorted(RELEASED)
    assert [r.name for r in list_released()] == names
    assert [r.name for r in list_released("clip_*")] == ["clip_vit_b16_openai", "clip_vit_b32_openai"]
    assert main(["weights", "--list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == names
    assert {r["name"]: r["sha256"] for r in rows} == {n: e.sha256 for n, e in RELEASED.items()}
    assert main(["weights", "--list", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in table] == names
    unknown = [r["name"] for r in table if r["sha256"] == "unknown"]
    assert unknown == [n for n in names if RELEASED[n].sha256 is None] and unknown
    assert main(["weights", "--list"]) == 0
    text = capsys.readouterr().out
    for name in names:
        assert any(line.startswith(name + " ") for line in text.splitlines())
    assert f"{len(names)} released checkpoints ({len(unknown)} without a known SHA-256)" in text
    assert main(["weights", "--list", "--pattern", "nothing_*"]) == 2


def test_every_sha_has_its_provenance():
    for name, entry in RELEASED.items():
        if entry.sha256 is not None:
            assert all(c in "0123456789abcdef" for c in entry.sha256) and len(entry.sha256) in (8, 64), name
            assert "SHA-256" in entry.notes, f"{name}: say where the SHA-256 comes from"
        else:
            assert "unknown" in entry.notes, f"{name}: say that the SHA-256 is unknown"


def test_benchmark_configs_name_only_known_released_checkpoints():
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    import re

    named = {m for p in root.rglob("*.yaml") for m in re.findall(r"released:([A-Za-z0-9_]+)", p.read_text())}
    named -= {"name"}  # 'released:<name>' in prose
    assert named and named <= set(RELEASED), sorted(named - set(RELEASED))
