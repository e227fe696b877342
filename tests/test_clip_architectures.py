"""Custom CLIP architectures as data (a JSON file, an inline mapping, register_clip_config) and
CLIPModel's input_space switch."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from wsss_kit.clip import (
    CONFIG_DIR,
    TINY_CLIP,
    CLIPModel,
    clip_architecture,
    frozen_clip,
    load_clip,
    register_clip_config,
    validate_clip_config,
)


def _tiny_cfg() -> dict[str, Any]:
    return json.loads((CONFIG_DIR / f"{TINY_CLIP}.json").read_text())


def _build(spec: Any) -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(spec)


def _same_architecture_and_init(a: CLIPModel, b: CLIPModel) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].shape == sb[key].shape, key
        assert torch.equal(sa[key], sb[key]), key  # same seed, same architecture → same init
    assert (a.embed_dim, a.vision_width, a.text_width, a.patch_size, a.num_blocks, a.context_length,
            a.image_size) == (b.embed_dim, b.vision_width, b.text_width, b.patch_size, b.num_blocks,
                              b.context_length, b.image_size)


@pytest.fixture(scope="module")
def tiny() -> CLIPModel:
    return _build(TINY_CLIP)


def test_json_file_builds_the_tiny_architecture_without_any_warning(
        tiny: CLIPModel, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "my-tiny-clip.json"
    path.write_text(json.dumps(_tiny_cfg()))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        clip = _build(str(path))
        text = clip.encode_text(["a photo of a cat."])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert clip.name == "my-tiny-clip"
    _same_architecture_and_init(clip, tiny)
    assert text.shape == (1, 32)
    assert torch.allclose(text, tiny.encode_text(["a photo of a cat."]))
    # a Path works too, and registering the same file again is a no-op
    assert clip_architecture(path) == "my-tiny-clip"


def test_inline_mapping_builds_the_tiny_architecture(tiny: CLIPModel, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _tiny_cfg()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        clip = _build(cfg)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert clip.name.startswith("custom-clip-")
    assert clip_architecture(dict(cfg)) == clip.name  # named by content: the same mapping, the same name
    _same_architecture_and_init(clip, tiny)
    images = torch.rand(2, 3, 64, 64)
    assert torch.allclose(clip.encode_image(images), tiny.encode_image(images))


def test_register_clip_config_for_python_users(tiny: CLIPModel) -> None:
    cfg = _tiny_cfg()
    assert register_clip_config("test-registered-tiny", cfg) == "test-registered-tiny"
    assert register_clip_config("test-registered-tiny", cfg) == "test-registered-tiny"  # idempotent
    _same_architecture_and_init(_build("test-registered-tiny"), tiny)
    wider = dict(cfg, embed_dim=48)
    with pytest.raises(ValueError, match=r"'test-registered-tiny' is already registered with another architecture"):
        register_clip_config("test-registered-tiny", wider)
    register_clip_config("test-registered-tiny", wider, replace=True)
    assert _build("test-registered-tiny").embed_dim == 48
    for replace in (False, True):
        with pytest.raises(ValueError, match=r"'ViT-B-16' is one of open_clip's own architectures"):
            register_clip_config("ViT-B-16", cfg, replace=replace)


def test_a_smaller_custom_architecture_and_frozen_clip() -> None:
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                           "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    clip = frozen_clip(cfg, weights=None)
    assert (clip.embed_dim, clip.vision_width, clip.patch_size, clip.num_blocks, clip.image_size) == (16, 32, 8, 1,
                                                                                                      (32, 32))
    assert clip.frozen and clip.encode_image(torch.rand(1, 3, 40, 48)).shape == (1, 16)
    with pytest.raises(ValueError, match=r"clip_weights='default'.*custom-clip-"):
        frozen_clip(cfg)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("text_cfg"), r"missing key 'text_cfg'"),
    (lambda c: c.update(embed_dim=0), r"embed_dim must be a positive int.*got 0"),
    (lambda c: c["vision_cfg"].update(width=-64), r"vision_cfg\.width must be a positive int.*got -64"),
    (lambda c: c["vision_cfg"].pop("patch_size"), r"vision_cfg: missing key 'patch_size'"),
    (lambda c: c["vision_cfg"].update(patch_szie=16), r"vision_cfg: unknown key 'patch_szie' \(did you mean 'patch_size'"),
    (lambda c: c["text_cfg"].update(heads=3), r"text_cfg\.width \(64\) must be a multiple of text_cfg\.heads \(3\)"),
    (lambda c: c["vision_cfg"].update(head_width=48), r"vision_cfg\.width \(64\) must be a multiple of vision_cfg\.head_width"),
    (lambda c: c["text_cfg"].update(layers="2"), r"text_cfg\.layers must be a positive int; got '2'"),
    (lambda c: c.update(emb_dim=3), r"unknown key 'emb_dim'"),
])
def test_bad_configs_name_the_key(edit: Any, message: str, tmp_path: Path) -> None:
    cfg = _tiny_cfg()
    edit(cfg)
    with pytest.raises(ValueError, match=message):
        validate_clip_config(cfg)
    with pytest.raises(ValueError, match=r"inline mapping.*" + message):
        load_clip(cfg)
    path = tmp_path / "bad-arch.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"bad-arch\.json.*" + message):
        load_clip(str(path))


def test_bad_files_and_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CLIP architecture file .*nowhere\.json does not exist"):
        clip_architecture(str(tmp_path / "nowhere.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json cannot be read as JSON"):
        clip_architecture(broken)
    with pytest.raises(TypeError, match="clip_model must be"):
        clip_architecture(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clip_model must be"):
        frozen_clip(3.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- input_space
def test_input_space_normalized_equals_unit(tiny: CLIPModel) -> None:
    images = torch.rand(2, 3, 64, 80)
    normed = (images - tiny.mean) / tiny.std
    ref = tiny.encode_image(images)
    assert torch.allclose(tiny.encode_image(normed, input_space="normalized"), ref, atol=1e-5)
    assert torch.allclose(tiny.encode_image(normed, normalized=True), ref, atol=1e-5)
    a = tiny.dense_features(images, layers=(0, 1))
    b = tiny.dense_features(normed, layers=(0, 1), input_space="normalized")
    for i in (0, 1):
        assert torch.allclose(a.layers[i], b.layers[i], atol=1e-5)
    assert torch.allclose(a.pixel_embeddings, b.pixel_embeddings, atol=1e-5)
    assert torch.equal(tiny.normalize(normed, "normalized"), normed)


def test_input_space_with_imagenet_normalization() -> None:
    clip = load_clip(TINY_CLIP, normalization="imagenet")
    images = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(clip.encode_image((images - mean) / std, input_space="normalized"),
                          clip.encode_image(images), atol=1e-5)


def test_bad_input_space_lists_the_choices(tiny: CLIPModel) -> None:
    images = torch.rand(1, 3, 64, 64)
    for call in (lambda: tiny.encode_image(images, input_space="imagenet"),
                 lambda: tiny.dense_features(images, input_space="normalised"),
                 lambda: tiny.normalize(images, "Unit")):
        with pytest.raises(ValueError, match=r"input_space must be one of 'unit', 'normalized'"):
            call()
