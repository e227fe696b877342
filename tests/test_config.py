"""Config files: parsing, --set overrides, building nodes, and errors that name the bad key."""

from __future__ import annotations

import pytest
import torch

import wsss_kit
from wsss_kit.config import apply_overrides, build, check_keys, get_path, load_config, parse_config
from wsss_kit.errors import ConfigError
from wsss_kit.registry import default_registry


class _Scale(wsss_kit.Loss):
    def __init__(self, factor: float = 1.0, inner: object = None):
        super().__init__()
        self.factor, self.inner = factor, inner

    def forward(self, x):
        return x * self.factor


@pytest.fixture
def scale_loss():
    wsss_kit.register("losses", "test_scale", _Scale)
    yield
    default_registry().unregister("losses", "test_scale")


def test_overrides_parse_yaml_values_and_create_paths():
    cfg = {"cam": {"train": {"lr": 0.1, "steps": 10}}, "stages": ["a", "b"]}
    out = apply_overrides(cfg, ["cam.train.lr=0.01", "cam.train.amp=true", "new.key=[1, 2]",
                                "stages.1=c", "cam.train.name=hello world"])
    assert out["cam"]["train"] == {"lr": 0.01, "steps": 10, "amp": True, "name": "hello world"}
    assert out["new"] == {"key": [1, 2]} and out["stages"] == ["a", "c"]
    assert cfg["cam"]["train"]["lr"] == 0.1  # the input is not modified


@pytest.mark.parametrize("override, fragment", [
    ("cam.train.lr", "must look like key.path=value"),
    ("cam..lr=1", "empty key path"),
    ("cam.train.lr.x=1", "'cam.train.lr' is a float, not a mapping"),
    ("stages.5=x", "indexes a list of 2 items"),
    ("cam.train.lr=[1, 2", "not valid YAML"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        apply_overrides({"cam": {"train": {"lr": 0.1}}, "stages": ["a", "b"]}, [override])


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cam:\n  model: {type: cams/resnet_cam\n  train: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML at line \d+, column \d+"):
        load_config(path)
    with pytest.raises(ConfigError, match="must be a mapping at the top level"):
        parse_config("- a\n- b\n", source="list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_build_nested_nodes_and_extra_keywords(scale_loss):
    node = {"type": "losses/test_scale", "factor": 2.0, "inner": {"type": "losses/test_scale", "factor": 3.0}}
    loss = build(node, "head.loss")
    assert isinstance(loss, _Scale) and loss.factor == 2.0
    assert isinstance(loss.inner, _Scale) and loss.inner.factor == 3.0
    assert float(loss(torch.tensor(1.5))) == 3.0
    # extra keywords fill in what the config leaves out, but never override it
    assert build({"type": "losses/test_scale"}, "x", factor=5.0).factor == 5.0
    assert build({"type": "losses/test_scale", "factor": 1.0}, "x", factor=5.0).factor == 1.0


def test_wrong_keyword_names_the_config_path_and_valid_ones(scale_loss):
    with pytest.raises(ConfigError) as err:
        build({"type": "losses/test_scale", "factr": 2.0}, "head.loss")
    msg = str(err.value)
    assert msg.startswith("head.loss.factr:")
    assert "did you mean 'factor'" in msg and "valid keywords: factor, inner" in msg


def test_nested_error_path(scale_loss):
    with pytest.raises(ConfigError, match=r"^head\.loss\.inner\.type: unknown losses plugin 'nope'"):
        build({"type": "losses/test_scale", "inner": {"type": "losses/nope"}}, "head.loss")


@pytest.mark.parametrize("type_value, fragment", [
    ("resnet_cam", "must be 'kind/name'"),
    (3, "must be 'kind/name'"),
    ("camz/resnet_cam", "unknown plugin kind 'camz'"),
])
def test_bad_type_strings(type_value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build({"type": type_value}, "cam.model")


def test_get_path_and_check_keys():
    cfg = {"a": {"b": {"c": 1}}}
    assert get_path(cfg, "a.b.c") == 1
    assert get_path(cfg, "a.x", default=None) is None
    with pytest.raises(ConfigError, match=r"missing key 'a\.b\.d' \(no 'd' under a\.b; keys there: c\)"):
        get_path(cfg, "a.b.d", source="run.yaml")
    with pytest.raises(ConfigError, match=r"cam\.infer\.scale: unknown key \(did you mean 'scales'\?\)"):
        check_keys({"scale": [1]}, ("scales", "flip"), "cam.infer")


def test_validate_checks_every_node_without_building(scale_loss):
    from wsss_kit.config import validate

    validate({"a": [{"type": "losses/test_scale", "factor": 2}], "b": {"c": 1}}, "cfg")
    with pytest.raises(ConfigError, match=r"^cfg\.a\.0\.inner\.factr: losses/test_scale has no keyword 'factr'"):
        validate({"a": [{"type": "losses/test_scale", "inner": {"type": "losses/test_scale", "factr": 1}}]}, "cfg")
    with pytest.raises(ConfigError, match=r"^head\.type: unknown losses plugin"):
        validate({"type": "losses/nope"}, "head")


def test_override_into_an_empty_section_and_singular_kinds():
    cfg = parse_config("seeds:\nrefiner: {type: refiners/dense_crf}\n")
    assert apply_overrides(cfg, ["seeds.bg_threshold=0.2"])["seeds"] == {"bg_threshold": 0.2}
    from wsss_kit.registry import check_kind

    assert [check_kind(k) for k in ("loss", "cam", "dataset", "head", "prompt", "refiner")] == [
        "losses", "cams", "datasets", "heads", "prompts", "refiners"]
