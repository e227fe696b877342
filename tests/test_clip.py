"""CLIP access (wsss_kit.clip) on the tiny random architecture: shapes, references, prompts, weights."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss_kit import WeightsError
from wsss_kit.clip import (
    CONFIG_DIR,
    IMAGENET_MEAN,
    TINY_CLIP,
    CLIPModel,
    TokenizedPrompts,
    interpolate_pos_embed,
    load_clip,
)

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-5


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(TINY_CLIP)


def _normed(clip: CLIPModel, images: torch.Tensor) -> torch.Tensor:
    return (images - clip.mean) / clip.std


# ---------------------------------------------------------------------- building
def test_tiny_config_builds_fast_frozen_and_ships_as_package_data() -> None:
    start = time.monotonic()
    model = load_clip(TINY_CLIP)
    assert (model.embed_dim, model.vision_width, model.text_width, model.patch_size) == (32, 64, 64, 16)
    assert (model.num_blocks, model.context_length, model.image_size) == (2, 77, (64, 64))
    assert all(not p.requires_grad for p in model.parameters())
    assert not model.model.training
    assert time.monotonic() - start < 30  # includes the first open_clip import; the build itself is ms
    assert (CONFIG_DIR / f"{TINY_CLIP}.json").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "clip/model_configs/*.json" in data["wsss_kit"]


def test_unknown_architecture_is_explained() -> None:
    with pytest.raises(ValueError, match="did you mean 'ViT-B-16'"):
        load_clip("ViT-B-61")


# ---------------------------------------------------------------------- images
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_image_shapes_at_two_sizes(clip: CLIPModel, size: tuple[int, int]) -> None:
    images = torch.rand(2, 3, *size)
    h, w = size[0] // 16, size[1] // 16
    emb = clip.encode_image(images)
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    feats = clip.dense_features(images, layers=(0, -1))
    assert list(feats.layers) == [0, 1] and feats.grid == (h, w)
    assert all(m.shape == (2, 64, h, w) for m in feats.layers.values())
    assert feats.pixel_embeddings.shape == (2, 32, h, w)
    assert torch.allclose(feats.cls_embedding, emb, atol=ATOL)
    assert feats.visual_context.shape == (2, 1 + h * w, 32)


def test_native_size_uses_the_stored_position_embedding(clip: CLIPModel) -> None:
    pos = clip.visual.positional_embedding
    assert interpolate_pos_embed(pos, (4, 4), (4, 4), "bilinear") is pos
    images = torch.rand(2, 3, 64, 64)
    reference = clip.model.encode_image(_normed(clip, images))  # open_clip's own forward
    assert torch.allclose(clip.encode_image(images), reference, atol=ATOL)
    # A constant grid stays constant under resizing; the class row is kept.
    const = torch.cat([torch.full((1, 3), 5.0), torch.ones(16, 3)])
    for mode in ("bilinear", "bicubic"):
        out = interpolate_pos_embed(const, (4, 4), (3, 5), mode)
        assert out.shape == (16, 3) and torch.allclose(out[1:], torch.ones(15, 3)) and out[0, 0] == 5.0
    grid = pos[1:].T.reshape(1, 64, 4, 4)
    manual = F.interpolate(grid, size=(6, 2), mode="bilinear", align_corners=False).reshape(64, 12).T
    assert torch.allclose(interpolate_pos_embed(pos, (4, 4), (6, 2), "bilinear")[1:], manual)


def test_dense_features_match_open_clip_intermediates(clip: CLIPModel) -> None:
    images = torch.rand(2, 3, 64, 64)
    ref = clip.visual.forward_intermediates(_normed(clip, images), indices=[0, 1], output_fmt="NCHW")
    feats = clip.dense_features(images, layers=(0, 1))
    for i in (0, 1):
        assert torch.allclose(feats.layers[i], ref["image_intermediates"][i], atol=ATOL)
    # Pixel embeddings = ln_post + projection of the last block's patch tokens.
    tokens = ref["image_intermediates"][1].flatten(2).transpose(1, 2)
    pixels = clip.visual.ln_post(tokens) @ clip.visual.proj
    assert torch.allclose(feats.pixel_embeddings.flatten(2).transpose(1, 2), pixels, atol=ATOL)
    only = clip.dense_features(images, layers=(0,), embeddings=False)
    assert only.pixel_embeddings is None and torch.allclose(only.layers[0], feats.layers[0], atol=ATOL)


def test_bad_images_and_layers_raise(clip: CLIPModel) -> None:
    with pytest.raises(ValueError, match="out of range for this 2-block ViT"):
        clip.dense_features(torch.rand(1, 3, 64, 64), layers=(3, 5, 7, 11))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        clip.encode_image(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="floating point"):
        clip.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_encode_image_can_skip_its_normalisation(clip: CLIPModel) -> None:
    images = torch.rand(2, 3, 64, 64)
    expected = clip.encode_image(images)
    assert torch.allclose(clip.encode_image(clip.normalize(images), normalized=True), expected, atol=ATOL)
    with pytest.raises(ValueError, match="floating point"):
        clip.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), normalized=True)


def test_imagenet_normalisation_and_options() -> None:
    model = load_clip(TINY_CLIP, normalization="imagenet", pos_interpolation="bilinear", precision="fp32")
    assert torch.allclose(model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    with pytest.raises(ValueError, match="precision"):
        load_clip(TINY_CLIP, precision="fp8")


def test_bf16_autocast_on_cpu_returns_float32(clip: CLIPModel) -> None:
    model = load_clip(TINY_CLIP, precision="bf16")
    model.load_state_dict(clip.state_dict())
    images = torch.rand(1, 3, 64, 64)
    out = model.encode_image(images)
    assert out.dtype == torch.float32
    assert torch.allclose(out, clip.encode_image(images), atol=0.1)


# ---------------------------------------------------------------------- text
def test_encode_text_matches_open_clip_and_caches(clip: CLIPModel, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["a photo of dog.", "a photo of cat."]
    reference = clip.model.encode_text(clip.tokenize(texts))
    calls = []
    original = clip.model.encode_text
    monkeypatch.setattr(clip.model, "encode_text", lambda t: calls.append(1) or original(t))
    clip.clear_text_cache()
    hits = clip.cache_hits
    first = clip.encode_text(texts)
    first.mul_(0)  # the caller's copy; the cache keeps its own
    second = clip.encode_text(texts)
    assert len(calls) == 1 and clip.cache_hits == hits + 1
    assert torch.allclose(second, reference, atol=ATOL)
    assert torch.equal(second, clip.encode_text(texts))
    clip.to("cpu")  # moving the model forgets cached features
    clip.encode_text(texts)
    assert len(calls) == 2


def test_unfrozen_model_does_not_cache() -> None:
    model = load_clip(TINY_CLIP, frozen=False)
    assert all(p.requires_grad for p in model.parameters())
    model.encode_text(["cat"])
    model.encode_text(["cat"])
    assert model.cache_hits == 0 and model.model.training


def test_tokenize_prompts_spans_and_errors(clip: CLIPModel) -> None:
    names = ["dog", "potted plant"]
    prompts = clip.tokenize_prompts(names, "a photo of {}.")
    assert torch.equal(prompts.token_ids, clip.tokenize([f"a photo of {n}." for n in names]))
    assert prompts.class_spans.tolist() == [[4, 5], [4, 6]] and prompts.eot_index.tolist() == [6, 7]
    bare = clip.tokenize_prompts(names, None, context_length=5)
    assert bare.token_ids.shape == (2, 5) and bare.class_spans.tolist() == [[1, 2], [1, 3]]
    with pytest.raises(ValueError, match="exactly one"):
        clip.tokenize_prompts(names, "a photo")
    with pytest.raises(ValueError, match="context length 3"):
        clip.tokenize_prompts(names, None, context_length=3)


def test_zero_context_matches_a_manual_pass(clip: CLIPModel) -> None:
    ids = clip.tokenize(["dog", "potted plant"], context_length=5)
    n_ctx, width = 3, clip.text_width
    out = clip.encode_text_with_context(ids, torch.zeros(n_ctx, width), position="after_start")
    emb = clip.model.token_embedding(ids)
    x = torch.cat([emb[:, :1], torch.zeros(2, n_ctx, width), emb[:, 1:]], dim=1)  # (2, 8, W)
    x = x + clip.model.positional_embedding[:8]
    x = clip.model.transformer(x, attn_mask=clip.model.attn_mask[:8, :8])
    x = clip.model.ln_final(x)
    eot = ids.argmax(dim=-1) + n_ctx
    manual = x[torch.arange(2), eot] @ clip.model.text_projection
    assert torch.allclose(out, manual, atol=ATOL)
    # No context at all: exactly CLIP's own text features.
    full = clip.tokenize(["dog", "potted plant"])
    assert torch.allclose(clip.encode_text_with_context(full, None), clip.encode_text(full), atol=ATOL)


@pytest.mark.parametrize("position, sentence", [
    ("before_class", "a photo of a good dog."),
    ("after_start", "a good a photo of dog."),
    ("after_class", "a photo of dog a good."),
])
def test_context_positions_equal_the_written_sentence(clip: CLIPModel, position: str, sentence: str) -> None:
    ctx = clip.token_embeddings(torch.tensor(clip.tokenizer.encode("a good")))  # (2, W)
    prompts = clip.tokenize_prompts(["dog"], "a photo of {}.")
    out = clip.encode_text_with_context(prompts, ctx, position=position)
    assert torch.allclose(out, clip.encode_text([sentence]), atol=ATOL)


def test_context_placement_in_a_hand_built_sequence(clip: CLIPModel) -> None:
    tok = clip.tokenizer
    a, photo, of, dog, dot = (tok.encode(w)[0] for w in ("a", "photo", "of", "dog", "."))
    sos, eot = tok.sot_token_id, tok.eot_token_id
    prompts = clip.tokenize_prompts(["dog"], "a photo of {}.")
    ctx = torch.randn(2, clip.text_width)
    expected = {
        "before_class": [sos, a, photo, of, "C0", "C1", dog, dot, eot],
        "after_start": [sos, "C0", "C1", a, photo, of, dog, dot, eot],
        "after_class": [sos, a, photo, of, dog, "C0", "C1", dot, eot],
    }
    for position, sequence in expected.items():
        x, eot_index = clip.prompt_embeddings(prompts, ctx, position)
        assert x.shape == (1, 77, clip.text_width) and eot_index.tolist() == [8]  # 6 + n_ctx
        for j, item in enumerate(sequence):
            want = ctx[int(item[1])] if isinstance(item, str) else clip.token_embeddings(torch.tensor(item))
            assert torch.equal(x[0, j], want), (position, j)


def test_eot_shift_and_weakclip_geometry(clip: CLIPModel) -> None:
    ids = clip.tokenize(["background", "potted plant", "tv monitor"], context_length=5)
    x, eot = clip.prompt_embeddings(ids, torch.randn(3, 8, clip.text_width), "after_start")
    assert x.shape[1] == 13  # 5 tokens + 8 context vectors
    assert eot.tolist() == (ids.argmax(dim=-1) + 8).tolist()
    with pytest.raises(ValueError, match="77 positions"):
        clip.prompt_embeddings(clip.tokenize(["dog"]), torch.randn(80, clip.text_width))


def test_class_embeddings_replace_the_name_tokens(clip: CLIPModel) -> None:
    names = ["dog", "potted plant"]
    prompts = clip.tokenize_prompts(names, "a photo of {}.")
    own = [clip.token_embeddings(torch.tensor(clip.tokenizer.encode(n))) for n in names]
    same = clip.encode_text_with_context(prompts, None, class_embeddings=own)
    assert torch.allclose(same, clip.encode_text([f"a photo of {n}." for n in names]), atol=ATOL)
    one = torch.randn(2, 1, clip.text_width)  # one vector per class, whatever the name length
    x, eot = clip.prompt_embeddings(prompts, None, class_embeddings=one)
    assert eot.tolist() == [6, 6] and torch.equal(x[1, 4], one[1, 0])


def test_frozen_clip_passes_gradients_to_context_but_not_to_itself(clip: CLIPModel) -> None:
    ctx = nn.Parameter(torch.randn(4, clip.text_width) * 0.02)
    images = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = clip.encode_text_with_context(clip.tokenize_prompts(["dog", "cat"], "{}."), ctx)
    (out.sum() + clip.encode_image(images).sum()).backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert images.grad is not None and images.grad.abs().sum() > 0  # CLIMS trains through the image tower
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())
    parent = nn.Sequential(clip).train()
    assert parent.training and clip.training and not clip.model.training


def test_prompts_from_plain_ids_need_an_eot(clip: CLIPModel) -> None:
    with pytest.raises(ValueError, match="no end-of-text"):
        TokenizedPrompts.from_token_ids(torch.ones(1, 5, dtype=torch.long), clip.tokenizer.eot_token_id)


# ---------------------------------------------------------------------- weights
def test_weights_file_and_released_name_round_trip(clip: CLIPModel, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), path)
    loaded = load_clip(TINY_CLIP, weights=path)
    images = torch.rand(1, 3, 64, 64)
    assert torch.allclose(loaded.encode_image(images), clip.encode_image(images), atol=ATOL)
    assert loaded.source == str(path)
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "ViT-B-16.pt").write_bytes(path.read_bytes())
    released = load_clip(TINY_CLIP, weights="released:clip_vit_b16_openai")
    assert torch.allclose(released.encode_image(images), clip.encode_image(images), atol=ATOL)


def test_openai_torchscript_archive_loads_with_quick_gelu(clip: CLIPModel, tmp_path: Path) -> None:
    import copy

    scripted = torch.jit.script(copy.deepcopy(clip.model).half())  # OpenAI's files hold fp16 weights
    path = tmp_path / "ViT-tiny.pt"
    scripted.save(str(path))
    exact = load_clip(TINY_CLIP, weights=path, quick_gelu=False)
    texts = ["a photo of dog."]
    assert torch.allclose(exact.encode_text(texts), clip.encode_text(texts), atol=1e-2)
    auto = load_clip(TINY_CLIP, weights=path)  # OpenAI archives were trained with QuickGELU
    from open_clip.transformer import QuickGELU

    assert any(isinstance(m, QuickGELU) for m in auto.modules())
    assert not any(isinstance(m, QuickGELU) for m in exact.modules())


def test_weights_of_another_architecture_name_file_model_and_key(clip: CLIPModel, tmp_path: Path) -> None:
    state = dict(clip.model.state_dict())
    state["visual.conv1.weight"] = torch.zeros(64, 3, 8, 8)  # a patch-8 file
    state["visual.positional_embedding"] = torch.zeros(65, 64)
    path = tmp_path / "patch8.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_clip(TINY_CLIP, weights=path)
    msg = str(info.value)
    assert str(path) in msg and "'wsss-tiny-clip'" in msg
    assert "visual.conv1.weight: file (64, 3, 8, 8) vs model (64, 3, 16, 16)" in msg and "patch 8" in msg
    state = {k: v for k, v in clip.model.state_dict().items() if not k.startswith("transformer.resblocks.1.")}
    torch.save(state, tmp_path / "shallow.pt")
    with pytest.raises(WeightsError, match="missing keys: transformer.resblocks.1"):
        load_clip(TINY_CLIP, weights=tmp_path / "shallow.pt")


def test_offline_tag_fails_fast_naming_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    resolve_mod = importlib.import_module("wsss_kit.weights.resolve")  # the package exports a function of that name
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WSSS_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(resolve_mod, "_hf_cached", lambda repo_id, filenames: False)
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_clip("ViT-B-16", weights="open_clip:ViT-B-16/openai")
    assert time.monotonic() - start < 5.0
    msg = str(info.value)
    assert "open_clip:ViT-B-16/openai" in msg and "HF_HUB_OFFLINE" in msg
    assert "'ViT-B-16.pt'" in msg and "released:clip_vit_b16_openai" in msg
