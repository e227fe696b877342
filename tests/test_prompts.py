"""The core prompt strategies (template, coop, defo, target_opt) on the tiny random CLIP."""

from __future__ import annotations

import inspect
import io

import pytest
import torch
import torch.nn.functional as F

import wsss_kit
from wsss_kit.clip import TINY_CLIP, CLIPModel, load_clip
from wsss_kit.prompts import (
    CoOpPrompt,
    DeFoPrompt,
    LearnableContextPrompt,
    TargetOptimizationPrompt,
    TemplatePrompt,
    context_prompt_preset,
)

NAMES = ["person", "potted plant", "dog"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def clip() -> CLIPModel:
    torch.manual_seed(0)
    return load_clip(TINY_CLIP)


# ---------------------------------------------------------------------- template
def test_template_single_and_overrides(clip: CLIPModel) -> None:
    strategy = TemplatePrompt(class_name_overrides={"person": "player"})
    assert strategy.prompts(NAMES) == ["a photo of player.", "a photo of potted plant.", "a photo of dog."]
    out = strategy(NAMES, clip=clip)
    assert out.shape == (3, 32) and not strategy.learnable
    assert torch.allclose(out, clip.encode_text(strategy.prompts(NAMES)), atol=ATOL)
    normed = TemplatePrompt(normalize=True)(NAMES, clip=clip)
    assert torch.allclose(normed.norm(dim=-1), torch.ones(3), atol=ATOL)


def test_template_averaging_normalises_then_renormalises(clip: CLIPModel) -> None:
    templates = ["a photo of {}.", "an image of {}."]
    strategy = TemplatePrompt(templates)
    assert strategy.prompts(["cat"]) == ["a photo of cat.", "an image of cat."]
    out = strategy(NAMES, clip=clip)
    a = F.normalize(clip.encode_text([f"a photo of {n}." for n in NAMES]), dim=-1)
    b = F.normalize(clip.encode_text([f"an image of {n}." for n in NAMES]), dim=-1)
    assert torch.allclose(out, F.normalize(a + b, dim=-1), atol=ATOL)


def test_template_errors() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TemplatePrompt("a photo of")
    with pytest.raises(TypeError, match="clip=clip"):
        TemplatePrompt()(NAMES)


# ---------------------------------------------------------------------- learnable
def test_coop_phrase_init_equals_the_phrase(clip: CLIPModel) -> None:
    coop = CoOpPrompt(clip=clip, class_names=NAMES)
    phrase = clip.token_embeddings(torch.tensor(clip.tokenizer.encode("a photo of a")))
    assert coop.context.shape == (4, clip.text_width) and torch.equal(coop.context.detach(), phrase)
    sentences = [f"a photo of a {n}." for n in NAMES]
    assert torch.allclose(coop(NAMES, clip=clip), clip.encode_text(sentences), atol=ATOL)


def test_defo_and_target_opt_start_from_the_words(clip: CLIPModel) -> None:
    defo = DeFoPrompt()
    assert torch.allclose(defo(NAMES, clip=clip), clip.encode_text([f"a photo of a {n}" for n in NAMES]), atol=ATOL)
    assert [tuple(v.shape) for v in defo.class_vectors] == [(1, 64), (2, 64), (1, 64)]
    target = TargetOptimizationPrompt()
    assert target.context is None
    assert torch.allclose(target(NAMES, clip=clip), clip.encode_text([f"a photo of {n}." for n in NAMES]),
                          atol=ATOL)


@pytest.mark.parametrize("factory, learnt", [
    (CoOpPrompt, {"context"}),
    (DeFoPrompt, {"context", "class_vectors.0", "class_vectors.1", "class_vectors.2"}),
    (TargetOptimizationPrompt, {"class_vectors.0", "class_vectors.1", "class_vectors.2"}),
])
def test_only_the_strategy_parameters_get_gradients(clip: CLIPModel, factory: type, learnt: set[str]) -> None:
    strategy = factory(clip=clip, class_names=NAMES)
    assert {n for n, _ in strategy.named_parameters()} == learnt
    strategy(NAMES, clip=clip).pow(2).sum().backward()
    for name, p in strategy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())


def test_normal_init_class_specific_and_determinism(clip: CLIPModel) -> None:
    def build() -> LearnableContextPrompt:
        torch.manual_seed(3)
        return CoOpPrompt(init="normal", n_ctx=8, init_std=1.0, class_specific=True, clip=clip, class_names=NAMES)

    a, b = build(), build()
    assert a.context.shape == (3, 8, clip.text_width) and a.context.abs().max() <= 2.0
    assert torch.equal(a.context, b.context)
    assert torch.equal(a(NAMES, clip=clip), b(NAMES, clip=clip))
    with pytest.raises(ValueError, match="per-class vectors for 3 classes"):
        a(["cat"], clip=clip)


def test_lazy_build_from_width_and_random_class_vectors() -> None:
    strategy = LearnableContextPrompt(init="normal", n_ctx=2, learn_class=True, class_init="normal",
                                      n_class_tokens=2, width=64, class_names=["a", "b"])
    assert strategy.built and strategy.context.shape == (2, 64)
    assert [tuple(v.shape) for v in strategy.class_vectors] == [(2, 64), (2, 64)]


def test_bad_settings_are_explained(clip: CLIPModel) -> None:
    with pytest.raises(ValueError, match="init phrase 'a photo of a' has 4 tokens"):
        CoOpPrompt(n_ctx=16, clip=clip, class_names=NAMES)
    with pytest.raises(ValueError, match="position must be one of"):
        CoOpPrompt(position="middle")
    with pytest.raises(ValueError, match="nothing to learn"):
        LearnableContextPrompt(learn_context=False)
    with pytest.raises(ValueError, match="needs n_ctx"):
        CoOpPrompt(init="normal")


def test_checkpoint_round_trip_into_an_unbuilt_strategy(clip: CLIPModel) -> None:
    torch.manual_seed(1)
    trained = DeFoPrompt(clip=clip, class_names=NAMES)
    with torch.no_grad():
        trained.context.add_(torch.randn_like(trained.context))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = DeFoPrompt()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.built and fresh.class_names == tuple(NAMES)
    assert torch.allclose(fresh(NAMES, clip=clip), trained(NAMES, clip=clip), atol=ATOL)


def test_a_plugin_preset_like_weakclip_context(clip: CLIPModel) -> None:
    WeakCLIPLike = context_prompt_preset(
        "WeakCLIPLike", n_ctx=8, position="after_start", template=None, init="normal",
        init_std=1.0, init_phrase=None, context_length=5)
    assert WeakCLIPLike.__module__ == __name__ and issubclass(WeakCLIPLike, LearnableContextPrompt)
    assert inspect.signature(WeakCLIPLike).parameters["n_ctx"].default == 8
    strategy = WeakCLIPLike(clip=clip, class_names=["background", "cat"])
    assert strategy.context.shape == (8, clip.text_width)
    ids = clip.tokenize(["background", "cat"], context_length=5)
    manual = clip.encode_text_with_context(ids, strategy.context, position="after_start")
    assert torch.allclose(strategy(["background", "cat"], clip=clip), manual, atol=ATOL)
    assert WeakCLIPLike(n_ctx=4).n_ctx == 4
    with pytest.raises(TypeError, match="unknown keyword"):
        context_prompt_preset("Bad", n_context=8)


# ---------------------------------------------------------------------- registry
def test_strategies_are_registered_in_the_core() -> None:
    infos = {i.name: i for i in wsss_kit.list_plugins("prompts")}
    for name in ("template", "coop", "defo", "target_opt"):
        assert infos[name].dist == "wsss-kit", name
    coop = wsss_kit.create("prompts", "coop", n_ctx=4)
    assert isinstance(coop, wsss_kit.PromptStrategy) and isinstance(coop, CoOpPrompt)
    assert isinstance(wsss_kit.create("prompts", "template", templates=["{}"]), TemplatePrompt)
    with pytest.raises(TypeError, match="did you mean 'n_ctx'"):
        wsss_kit.create("prompts", "coop", n_ctxx=4)


def test_cli_lists_the_prompt_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    from wsss_kit.cli.main import main

    assert main(["plugins", "--kind", "prompts"]) == 0
    out = capsys.readouterr().out
    for name in ("coop", "defo", "target_opt", "template"):
        assert any(line.strip().startswith(name) and "wsss-kit" in line for line in out.splitlines()), name
