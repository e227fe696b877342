"""The embedded world's foundations: the timm backbones ``wsss_world_resnet50`` / ``wsss_world_vit``, the
open_clip architecture ``wsss-synthetic-clip``, and their packaged ``released:`` weights (float16 files in
``wsss_kit/pretrained/``, written by ``save_packaged_state_dict``, resolved offline)."""

from __future__ import annotations

import hashlib
import importlib
import json
import tomllib
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch

import wsss_kit
import wsss_kit.weights.released as released_module
from wsss_kit import world_backbones
from wsss_kit.cli.main import main
from wsss_kit.clip import DEFAULT_CLIP_WEIGHTS, SYNTHETIC_CLIP, frozen_clip, load_clip
from wsss_kit.errors import WeightsError
from wsss_kit.registry import default_registry
from wsss_kit.weights import (
    RELEASED,
    create_timm_model,
    list_released,
    load_state_dict,
    packaged_dir,
    required_weights,
    resolve,
    save_packaged_state_dict,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = {"wsss_synthetic_clip": "clip", "wsss_world_resnet50": "resnet", "wsss_world_vit": "vit"}


@pytest.fixture
def pkg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty packaged-weights folder standing in for ``wsss_kit/pretrained/``; WSSS_WEIGHTS_DIR elsewhere."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    monkeypatch.setattr(released_module, "PACKAGED_DIR", folder)
    for _name, _entry in list(released_module.RELEASED.items()):  # stand-in files: not the shipped SHA-256
        if _entry.packaged:
            monkeypatch.setitem(released_module.RELEASED, _name, __import__("dataclasses").replace(_entry, sha256=None))
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path / "downloads"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def _rounded(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a float16 round trip gives back: each float value rounded to float16, as float32."""
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def _assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


# --------------------------------------------------------------------------- architectures
def test_backbones_are_timm_models_after_import_wsss_kit():
    assert set(world_backbones.WORLD_BACKBONES) <= set(timm.list_models("wsss_world_*"))
    assert all(timm.is_model(n) for n in ("wsss_world_resnet50", "wsss_world_vit"))
    cfg = timm.models.get_pretrained_cfg("wsss_world_resnet50")
    assert cfg.classifier == "fc" and not cfg.url and not cfg.hf_hub_id and cfg.input_size == (3, 128, 128)
    assert timm.models.get_pretrained_cfg("wsss_world_vit").classifier == "head"


def test_world_resnet50_has_resnet50_layout_at_quarter_width():
    torch.manual_seed(0)
    net = timm.create_model("wsss_world_resnet50", num_classes=5)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert all(hasattr(block, "conv3") for i in range(1, 5) for block in getattr(net, f"layer{i}"))  # bottlenecks
    assert net.conv1.kernel_size == (7, 7) and net.conv1.out_channels == 64  # ResNet-50's stem
    assert [getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert net.fc.in_features == 512
    backbone = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("fc."))
    assert 1.4e6 < backbone < 1.6e6
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 5)
    feats = timm.create_model("wsss_world_resnet50", features_only=True)
    assert feats.feature_info.channels() == [64, 64, 128, 256, 512]
    assert feats.feature_info.reduction() == [2, 4, 8, 16, 32]
    for stride, side in ((32, 4), (16, 8), (8, 16)):
        deep = timm.create_model("wsss_world_resnet50", features_only=True, out_indices=(-1,), output_stride=stride)
        assert deep(torch.rand(1, 3, 128, 128))[-1].shape == (1, 512, side, side)


def test_world_vit_is_deit_style():
    torch.manual_seed(0)
    vit = timm.create_model("wsss_world_vit", num_classes=5)
    assert isinstance(vit, timm.models.vision_transformer.VisionTransformer)
    assert vit.num_prefix_tokens == 1 and vit.cls_token is not None and not hasattr(vit, "dist_token")
    assert tuple(vit.patch_embed.grid_size) == (16, 16) and vit.embed_dim == 128 and len(vit.blocks) == 6
    assert vit.blocks[0].attn.num_heads == 4 and vit.blocks[0].mlp.fc1.out_features == 512
    backbone = sum(p.numel() for n, p in vit.named_parameters() if not n.startswith("head."))
    assert 1.2e6 < backbone < 1.3e6
    x = torch.rand(2, 3, 128, 128)
    assert vit(x).shape == (2, 5) and vit.forward_features(x).shape == (2, 257, 128)
    small = timm.create_model("wsss_world_vit", img_size=96, num_classes=0)
    assert small.pos_embed.shape == (1, 1 + 12 * 12, 128) and small(torch.rand(1, 3, 96, 96)).shape == (1, 128)
    maps = timm.create_model("wsss_world_vit", features_only=True)(x)
    assert maps[-1].shape == (2, 128, 16, 16)


def test_registration_twice_is_quiet_and_pretrained_true_is_refused():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # timm warns when a name is overwritten
        assert world_backbones.register_world_backbones() == world_backbones.WORLD_BACKBONES
        importlib.reload(world_backbones)
        importlib.reload(wsss_kit)
    assert timm.create_model("wsss_world_vit").embed_dim == 128
    with pytest.raises(WeightsError, match=r"'wsss_world_resnet50'.*released:wsss_world_resnet50"):
        timm.create_model("wsss_world_resnet50", pretrained=True)
    with pytest.raises(WeightsError, match=r"no downloadable weights for 'timm:wsss_world_vit'.*'released:wsss_world_vit'"):
        create_timm_model("wsss_world_vit", "timm:wsss_world_vit")


def test_synthetic_clip_architecture():
    torch.manual_seed(0)
    clip = load_clip(SYNTHETIC_CLIP, precision="fp32")
    cfg = json.loads((ROOT / "wsss_kit/clip/model_configs/wsss-synthetic-clip.json").read_text())
    assert cfg == {"embed_dim": 64,
                   "vision_cfg": {"image_size": 128, "layers": 6, "width": 128, "head_width": 32, "patch_size": 8,
                                  "no_ln_pre": True, "norm_kwargs": {"eps": 1e-6}},
                   "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3}}
    # the world ViT's tower (6 blocks of 4 heads, no pre-norm, LayerNorm eps 1e-6): the shipped CLIP's image side
    assert (clip.embed_dim, clip.context_length, clip.num_blocks) == (64, 32, 6)
    assert clip.patch_size == 8 and clip.image_size == (128, 128)
    tokens = clip.tokenize(["a photo of a boat.", "a photo of water."])
    assert tokens.shape == (2, 32) and tokens[0, 0] == 49406  # open_clip's tokenizer: <start_of_text>
    images = torch.rand(2, 3, 128, 128)
    assert clip.encode_image(images).shape == (2, 64) and clip.encode_text(["a photo of a boat."]).shape == (1, 64)
    dense = clip.dense_features(images, layers=(1, 3))
    assert dense.grid == (16, 16) and dense.layers[3].shape == (2, 128, 16, 16)  # dense enough for matching
    assert dense.pixel_embeddings.shape == (2, 64, 16, 16)


# --------------------------------------------------------------------------- the packaged format
def test_save_packaged_state_dict_writes_float16_keys_exactly(tmp_path: Path):
    torch.manual_seed(0)
    net = timm.create_model("wsss_world_resnet50", num_classes=3)
    net.bn1.num_batches_tracked += 7
    path = save_packaged_state_dict(net, tmp_path / "sub" / "net.pt")
    raw = torch.load(path, weights_only=True)
    own = net.state_dict()
    assert list(raw) == list(own)
    assert {raw[k].dtype for k in raw if own[k].is_floating_point()} == {torch.float16}
    assert raw["bn1.num_batches_tracked"].dtype == torch.int64 and int(raw["bn1.num_batches_tracked"]) == 7
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # written through a temp file, renamed
    # read back: float32, exactly the float16-rounded values
    _assert_same_state(load_state_dict(path), _rounded(own))
    # about half of float32's bytes
    assert path.stat().st_size < 0.55 * sum(v.numel() * v.element_size() for v in own.values())
    # the same state gives the same bytes under any name (a rebuild reproduces the SHA-256)
    assert save_packaged_state_dict(net, tmp_path / "other.pt").read_bytes() == path.read_bytes()


def test_save_packaged_state_dict_refuses_what_float16_cannot_hold(tmp_path: Path):
    with pytest.raises(WeightsError, match=r"'big'.*100000.*float16"):
        save_packaged_state_dict({"ok": torch.ones(2), "big": torch.tensor([1.0, -1e5])}, tmp_path / "a.pt")
    with pytest.raises(WeightsError, match=r"'bad'.*NaN"):
        save_packaged_state_dict({"bad": torch.tensor([float("nan")])}, tmp_path / "b.pt")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temp file


def test_load_state_dict_widens_half_tensors(tmp_path: Path):
    state = {"h": torch.tensor([0.1, 65504.0], dtype=torch.float16), "b": torch.tensor([0.3], dtype=torch.bfloat16),
             "d": torch.tensor([0.1], dtype=torch.float64), "i": torch.tensor([3])}
    torch.save(state, tmp_path / "half.pt")
    got = load_state_dict(tmp_path / "half.pt")
    assert {k: v.dtype for k, v in got.items()} == {"h": torch.float32, "b": torch.float32, "d": torch.float64,
                                                    "i": torch.int64}
    assert torch.equal(got["h"], state["h"].float()) and torch.equal(got["b"], state["b"].float())


# --------------------------------------------------------------------------- released: entries
def test_packaged_entries():
    for name, what in PACKAGED.items():
        entry = RELEASED[name]
        assert entry.packaged and entry.filename == f"{name}.pt"
        assert entry.reproduce == f"python -m benchmarks pretrain {what}"
        assert entry.source == f"shipped with wsss_kit; reproduce with python -m benchmarks pretrain {what}"
    assert "wsss_world_resnet50" in RELEASED["wsss_world_resnet50"].fits
    assert "mctformer" in RELEASED["wsss_world_vit"].fits
    assert "wsss-synthetic-clip" in RELEASED["wsss_synthetic_clip"].fits
    assert not any(e.packaged for n, e in RELEASED.items() if n not in PACKAGED)
    assert packaged_dir() == ROOT / "wsss_kit" / "pretrained"
    assert DEFAULT_CLIP_WEIGHTS[SYNTHETIC_CLIP] == "released:wsss_synthetic_clip"


def test_packaged_weights_ship_as_package_data_and_stay_small():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["wsss_kit"]
    assert "pretrained/*.pt" in data
    shipped = ROOT / "wsss_kit" / "pretrained"
    files = sorted(p.name for p in shipped.iterdir()) if shipped.is_dir() else []
    assert set(files) <= {RELEASED[n].filename for n in PACKAGED}, "wsss_kit/pretrained/ holds only the shipped files"
    assert sum((shipped / f).stat().st_size for f in files) <= 25 * 2**20


def test_released_timm_weights_load_from_the_package_offline(pkg: Path, tmp_path: Path):
    torch.manual_seed(0)
    trained = timm.create_model("wsss_world_resnet50", num_classes=7)  # a classifier of the pretext's size
    save_packaged_state_dict(trained, pkg / "wsss_world_resnet50.pt")
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "wsss_world_resnet50.pt").write_bytes(b"not this one")  # WSSS_WEIGHTS_DIR plays no part
    assert resolve("released:wsss_world_resnet50") == pkg / "wsss_world_resnet50.pt"
    want = _rounded(trained.state_dict())

    same = create_timm_model("wsss_world_resnet50", "released:wsss_world_resnet50", num_classes=7)
    _assert_same_state(same.state_dict(), want)
    assert all(p.dtype == torch.float32 for p in same.parameters())

    other = create_timm_model("wsss_world_resnet50", "released:wsss_world_resnet50", num_classes=3)
    assert other.fc.weight.shape == (3, 512)  # another head size: the file's head is dropped
    assert torch.equal(other.layer4[2].conv3.weight, want["layer4.2.conv3.weight"])

    feats = create_timm_model("wsss_world_resnet50", "released:wsss_world_resnet50", features_only=True,
                              output_stride=16)
    assert torch.equal(feats.state_dict()["layer1.0.conv1.weight"], want["layer1.0.conv1.weight"])


def test_released_vit_weights_load(pkg: Path):
    torch.manual_seed(1)
    trained = timm.create_model("wsss_world_vit", num_classes=9)
    save_packaged_state_dict(trained, pkg / "wsss_world_vit.pt")
    vit = create_timm_model("wsss_world_vit", "released:wsss_world_vit", num_classes=0)
    want = _rounded(trained.state_dict())
    assert torch.equal(vit.pos_embed, want["pos_embed"]) and torch.equal(vit.blocks[5].mlp.fc2.weight,
                                                                         want["blocks.5.mlp.fc2.weight"])
    assert vit.pos_embed.dtype == torch.float32


def test_released_clip_loads_from_the_package(pkg: Path):
    torch.manual_seed(2)
    trained = load_clip(SYNTHETIC_CLIP, frozen=False, precision="fp32")
    save_packaged_state_dict(trained.model, pkg / "wsss_synthetic_clip.pt")
    clip = load_clip(SYNTHETIC_CLIP, weights="released:wsss_synthetic_clip", precision="fp32")
    assert clip.source == str(pkg / "wsss_synthetic_clip.pt")
    _assert_same_state(clip.model.state_dict(), _rounded(trained.model.state_dict()))
    default = frozen_clip(SYNTHETIC_CLIP, precision="fp32")  # clip_weights: default → the shipped CLIP
    _assert_same_state(default.model.state_dict(), clip.model.state_dict())
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(clip.encode_image(images), trained.encode_image(images), atol=2e-2)


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_a_missing_packaged_file_names_the_file_and_the_command(pkg: Path, name: str):
    entry = RELEASED[name]
    with pytest.raises(WeightsError) as info:
        resolve(f"released:{name}", purpose="weights for the test")
    text = str(info.value)
    assert str(pkg / entry.filename) in text and entry.reproduce in text and repr(name) in text
    assert "reinstall wsss_kit" in text and "not downloaded" not in text


def test_a_missing_clip_file_fails_before_building(pkg: Path):
    with pytest.raises(WeightsError, match=r"wsss_synthetic_clip\.pt.*python -m benchmarks pretrain clip"):
        load_clip(SYNTHETIC_CLIP, weights="released:wsss_synthetic_clip")
    with pytest.raises(WeightsError, match=r"python -m benchmarks pretrain resnet"):
        create_timm_model("wsss_world_resnet50", "released:wsss_world_resnet50")


def test_a_known_sha256_is_checked(pkg: Path, monkeypatch: pytest.MonkeyPatch):
    path = save_packaged_state_dict({"w": torch.ones(3)}, pkg / "wsss_world_vit.pt")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(RELEASED, "wsss_world_vit", replace(RELEASED["wsss_world_vit"], sha256=digest))
    assert resolve("released:wsss_world_vit") == path
    monkeypatch.setitem(RELEASED, "wsss_world_vit", replace(RELEASED["wsss_world_vit"], sha256="0" * 64))
    with pytest.raises(WeightsError, match=rf"{digest}, expected 0{{64}}.*python -m benchmarks pretrain vit"):
        resolve("released:wsss_world_vit")


# --------------------------------------------------------------------------- listing
def test_list_released_and_wsss_weights_list_show_shipped_files(pkg: Path, capsys: pytest.CaptureFixture[str]):
    save_packaged_state_dict({"w": torch.ones(1)}, pkg / "wsss_world_vit.pt")
    rows = {r.name: r for r in list_released("wsss_*")}
    assert sorted(rows) == sorted(PACKAGED) and all(r.packaged for r in rows.values())
    assert rows["wsss_world_vit"].present and not rows["wsss_world_resnet50"].present
    assert rows["wsss_world_vit"].path == str(pkg / "wsss_world_vit.pt")
    assert not list_released("clip_vit_b16_openai")[0].packaged

    assert main(["weights", "--list", "--pattern", "wsss_*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[0]: line for line in lines if line and not line.startswith(" ")}
    assert "  shipped  " in row["wsss_world_vit"] and "  shipped, MISSING  " in row["wsss_world_resnet50"]
    assert f"path:   {pkg / 'wsss_world_vit.pt'}" in "\n".join(lines)
    assert lines[-1].startswith("3 released checkpoints (3 without a known SHA-256), 3 shipped with wsss_kit (2 missing)")
    assert main(["weights", "--list", "--pattern", "wsss_world_vit", "--format", "json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["packaged"] is True and entry["present"] is True and entry["path"] == str(pkg / "wsss_world_vit.pt")


def _clip_node(num_classes: int = 2, clip_model: str = SYNTHETIC_CLIP, clip_weights: str | None = "default",
               weights: str | None = "released:wsss_world_resnet50") -> object:
    raise AssertionError("wsss weights must not build plugins")


def test_wsss_weights_config_reports_shipped_files(pkg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    wsss_kit.register("cams", "test_world_clip_node", _clip_node)
    try:
        cfg = tmp_path / "run.yaml"
        cfg.write_text("cam: {model: {type: cams/test_world_clip_node}}\n")
        save_packaged_state_dict({"w": torch.ones(1)}, pkg / "wsss_synthetic_clip.pt")
        rows = {r.key: r for r in required_weights({"cam": {"model": {"type": "cams/test_world_clip_node"}}})}
        clip, resnet = rows["cam.model.clip_weights"], rows["cam.model.weights"]
        assert clip.spec == "released:wsss_synthetic_clip" and clip.status == "present"
        assert clip.location == str(pkg / "wsss_synthetic_clip.pt") and clip.source.startswith("shipped with wsss_kit")
        assert resnet.status == "missing" and resnet.missing
        assert "shipped with wsss_kit is missing" in resnet.detail and "python -m benchmarks pretrain resnet" in resnet.detail
        assert main(["weights", str(cfg)]) == 1
        text = capsys.readouterr().out
        assert "cam.model.clip_weights  released:wsss_synthetic_clip  [present]" in text
        assert "cam.model.weights  released:wsss_world_resnet50  [MISSING]" in text
    finally:
        default_registry().unregister("cams", "test_world_clip_node")


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_the_shipped_files_load(name: str):
    """The real files in wsss_kit/pretrained/, once pretraining has produced them: float16, the model's keys
    exactly, loaded as float32 through released: (SHA-256 checked when RELEASED knows it)."""
    path = packaged_dir() / RELEASED[name].filename
    if not path.is_file():
        pytest.skip(f"{path} is not built yet (python -m benchmarks pretrain {PACKAGED[name]})")
    raw = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw.values() if v.is_floating_point())
    if name == "wsss_synthetic_clip":
        model = load_clip(SYNTHETIC_CLIP, weights=f"released:{name}").model
    else:
        head = raw["fc.weight" if name == "wsss_world_resnet50" else "head.weight"]
        model = create_timm_model(name, f"released:{name}", num_classes=head.shape[0])
    assert set(model.state_dict()) == set(raw)
    assert all(p.dtype == torch.float32 for p in model.parameters())
