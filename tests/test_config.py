"""Config files: parsing, --set overrides, building nodes, and errors that name the bad key."""

from __future__ import annotations

import re

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


_LAUGHS = "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + _LAUGHS  # 9**10 values


def _timed(fn, *args, limit_s=20.0):
    import time

    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        fn(*args)
    assert time.perf_counter() - start < limit_s
    return str(info.value)


def test_billion_laughs_in_a_file_is_refused_quickly(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text("cam:\n  train:\n    steps: 5\n    extra:\n" + "".join(
        "      " + line + "\n" for line in BILLION_LAUGHS.splitlines()))
    message = _timed(load_config, path)
    assert "laughs.yaml" in message and "1,000,000 values" in message and "alias" in message


def test_billion_laughs_in_a_set_value_is_refused_quickly():
    flow = "{a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol], " + ", ".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(9)) + "}"
    message = _timed(apply_overrides, {"cam": {}}, [f"cam.extra={flow}"])
    assert "override 'cam.extra=" in message and "1,000,000 values" in message


def test_a_value_containing_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("cam:\n  x: &loop [1, *loop]\n")
    message = _timed(load_config, path)
    assert "loop.yaml" in message and "cam.x.1 contains itself" in message
    message = _timed(apply_overrides, {}, ["seeds.m=&m {k: *m}"])
    assert "override 'seeds.m=" in message and "contains itself" in message


def test_too_deep_nesting_is_refused():
    assert "more than 100 levels" in _timed(parse_config, "a: " + "[" * 150 + "]" * 150, "deep.yaml")
    assert "nested too deeply" in _timed(parse_config, "a: " + "[" * 5000 + "]" * 5000, "deeper.yaml")
    assert "nested too deeply" in _timed(apply_overrides, {}, ["x=" + "[" * 5000 + "]" * 5000])
    parse_config("a: " + "[" * 50 + "]" * 50)  # ordinary nesting still reads


def test_aliases_within_limits_still_work():
    cfg = parse_config("base: &b {lr: 0.1, steps: 3}\ncam: {train: *b}\nhead: {train: {<<: *b, lr: 0.2}}\n")
    assert cfg["cam"]["train"] == {"lr": 0.1, "steps": 3}
    assert cfg["head"]["train"] == {"lr": 0.2, "steps": 3}


def test_latin1_config_names_the_file_and_byte(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("run_dir: runs/caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml.*not UTF-8.*offset 17 \(line 1, column 18\).*0xe9.*save the file as UTF-8"):
        load_config(path)


def test_unreadable_config_paths_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"'.*folder_cfg' is a folder"):
        (tmp_path / "folder_cfg").mkdir()
        load_config(tmp_path / "folder_cfg")


def test_permission_denied_config_is_named(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "read_bytes", denied)
    with pytest.raises(ConfigError, match=r"secret\.yaml' cannot be read: permission denied"):
        load_config(path)


@pytest.mark.parametrize("text, fragment", [
    ("1: {a: 2}\n", "top-level keys must be section names (strings), got 1 (int)"),
    ("null: 3\ncam: {}\n", "got None (NoneType)"),
    ("cam: {a: 1}\nseeds: {}\ncam: {b: 2}\n", "line 3, column 1: key 'cam' appears twice (first on line 1)"),
    ("cam: {train: {lr: 1, lr: 2}}\n", "key 'lr' appears twice"),
])
def test_bad_top_level_and_repeated_keys(text, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_config(text, source="top.yaml")
