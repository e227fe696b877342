"""WeakCLIP network: components, presets, gradients, and the official-checkpoint converter.

Everything runs on the tiny CLIP (``wsss-tiny-clip``: 2 ViT blocks of width 64, text width 64,
E = 32) with tiny co-attention and decoder widths, on the CPU.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_kit.clip import TINY_CLIP, interpolate_pos_embed, load_clip
from wsss_kit.errors import WeightsError
from wsss_weakclip import (
    PAPER_MIOU,
    PAPER_VS_OFFICIAL,
    PRESETS,
    WeakCLIPContext,
    WeakCLIPNet,
    convert_official_weakclip,
    load_official_checkpoint,
    resolve_settings,
)
from wsss_weakclip.decoder import FPNHead, FPNNeck, TextGuidedDecoder, concat_scores, resized_scores
from wsss_weakclip.encoder import FrozenCLIPEncoder, default_stage_layers
from wsss_weakclip.matching import CoAttentionMatching, match_scores
from wsss_weakclip.presets import TABLE4, TABLE5, TABLE8
from wsss_weakclip.pyramid import PatchConvTranspose2d, PyramidAdapter, conv_transpose_2x2, pyramid_sizes

NAMES = ("background", "cat", "dog")
TINY = dict(matching_width=16, decoder_channels=8)
SIZES = [(64, 64), (48, 80), (80, 48), (72, 88)]


@pytest.fixture(scope="module")
def clip():
    return load_clip(TINY_CLIP, normalization="imagenet", pos_interpolation="bilinear", precision="fp32")


def make_net(clip, preset="official", seed=0, **kw):
    torch.manual_seed(seed)
    return WeakCLIPNet(NAMES, clip_model=clip, preset=preset, **{**TINY, **kw})


def images(b=2, h=64, w=64, seed=1):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- prompt
def test_weakclip_context_defaults(clip):
    prompt = WeakCLIPContext(clip=clip, class_names=NAMES)
    assert prompt.context.shape == (8, clip.text_width)
    assert prompt.context.abs().max() <= 2.0 and 0.6 < float(prompt.context.detach().std()) < 1.2  # trunc normal, std 1
    assert prompt.position == "after_start" and prompt.template is None and prompt.context_length == 5
    seq, eot = clip.prompt_embeddings(clip.tokenize_prompts(list(NAMES), None, 5), prompt.context, "after_start")
    assert seq.shape[1] == 13  # 5 + 8 positions
    ids = clip.tokenize(list(NAMES), context_length=5)
    assert torch.equal(eot, ids.argmax(dim=1) + 8)  # the [EOT] index moves by N
    assert torch.allclose(seq[:, 1:9], prompt.context.expand(3, -1, -1))  # right after [SOS]
    assert prompt(NAMES, clip=clip).shape == (3, clip.embed_dim)
    assert WeakCLIPContext(n_ctx=16, clip=clip, class_names=NAMES).context.shape == (16, clip.text_width)
    assert WeakCLIPContext(position="after_class", clip=clip, class_names=NAMES).position == "after_class"


def test_weakclip_context_is_registered(clip):
    assert "weakclip_context" in {p.name for p in wsss_kit.list_plugins("prompts")}
    strategy = wsss_kit.create("prompts", "weakclip_context", n_ctx=4)
    assert isinstance(strategy, WeakCLIPContext)
    assert strategy(NAMES, clip=clip).shape == (3, clip.embed_dim) and strategy.context.shape == (4, clip.text_width)


# ---------------------------------------------------------------------------------------------- encoder
def test_default_stage_layers():
    assert default_stage_layers(12) == (3, 5, 7, 11)
    assert default_stage_layers(24) == (7, 11, 15, 23)
    assert default_stage_layers(2) == (0, 0, 0, 1)


@pytest.mark.parametrize("size", SIZES)
def test_encoder_shapes(clip, size):
    enc = FrozenCLIPEncoder(clip, cls_embedding_twice=True, pos_base_size=512, drop_path=0.1)
    f = enc(images(2, *size))
    h, w = size[0] // 16, size[1] // 16
    assert f.grid == (h, w)
    assert [tuple(s.shape) for s in enc.stages(f)] == [(2, 64, h, w)] * 4
    assert f.pixel_embeddings.shape == (2, 32, h, w) and f.visual_context.shape == (2, 1 + h * w, 32)
    assert not f.pixel_embeddings.requires_grad  # the frozen image forward runs without autograd


def test_encoder_without_quirks_is_core_dense_features(clip):
    x = images(2, 48, 80)
    enc = FrozenCLIPEncoder(clip, (0, 0, 1, 1))
    assert not enc.custom_forward
    ref = clip.dense_features(x, layers=(0, 1))
    own = enc._forward_official(x)  # the quirk path with every quirk off
    for got in (enc(x), own):
        assert torch.allclose(got.layers[0], ref.layers[0], atol=1e-5)
        assert torch.allclose(got.layers[1], ref.layers[1], atol=1e-5)
        assert torch.allclose(got.visual_context, ref.visual_context, atol=1e-5)


def test_encoder_official_position_embedding(clip):
    visual = clip.visual
    enc = FrozenCLIPEncoder(clip, cls_embedding_twice=True, pos_base_size=512)
    pos = enc._position_embedding((3, 5))
    base = interpolate_pos_embed(visual.positional_embedding, (4, 4), (32, 32), "bilinear")
    ref = interpolate_pos_embed(base, (32, 32), (3, 5), "bilinear")
    assert torch.allclose(pos[1:], ref[1:])
    assert torch.allclose(pos[0], ref[0] + visual.class_embedding)  # CLS: class embedding added twice
    plain = FrozenCLIPEncoder(clip)._position_embedding((3, 5))
    assert torch.allclose(plain, interpolate_pos_embed(visual.positional_embedding, (4, 4), (3, 5), "bilinear"))
    x = images(1, 48, 80)
    assert not torch.allclose(enc(x).visual_context, FrozenCLIPEncoder(clip)(x).visual_context)


def test_encoder_drop_path_only_in_train_mode(clip):
    enc = FrozenCLIPEncoder(clip, drop_path=0.5)
    x = images(4)
    enc.eval()
    a, b = enc(x).visual_context, enc(x).visual_context
    assert torch.equal(a, b)
    enc.train()
    torch.manual_seed(0)
    c = enc(x).visual_context
    torch.manual_seed(1)
    d = enc(x).visual_context
    assert not torch.allclose(c, d) and not clip.model.training
    assert torch.equal(FrozenCLIPEncoder(clip).train()(x).visual_context, a)  # no drop path: train == eval


# ---------------------------------------------------------------------------------------------- adapter
@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (2, 7)])
def test_pyramid_adapter_shapes(grid):
    adapter = PyramidAdapter(8)
    out = adapter([torch.randn(2, 8, *grid) for _ in range(4)])
    assert [tuple(o.shape[-2:]) for o in out] == pyramid_sizes(grid)
    assert all(o.shape[:2] == (2, 8) for o in out)
    assert pyramid_sizes(grid)[3] == (grid[0] // 2, grid[1] // 2)


@pytest.mark.parametrize("shape", [(1, 6, 4, 4), (3, 5, 2, 7), (2, 4, 1, 1)])
def test_conv_transpose_2x2_equals_conv_transpose2d(shape):
    torch.manual_seed(sum(shape))
    x = torch.randn(shape)
    for bias in (True, False):
        ref = nn.ConvTranspose2d(shape[1], 3, 2, stride=2, bias=bias)
        ours = PatchConvTranspose2d(shape[1], 3, bias=bias)
        ours.load_state_dict(ref.state_dict())  # the same parameter names and shapes
        out = ours(x)
        assert out.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3]) and out.is_contiguous()
        assert torch.allclose(out, ref(x), atol=1e-6)
        assert torch.allclose(ours(x.to(memory_format=torch.channels_last)), out, atol=1e-6)
    # hand case: one input pixel spreads its 2x2 kernel, scaled, over its output block
    w = torch.arange(8.0).reshape(1, 2, 2, 2)
    y = conv_transpose_2x2(torch.tensor([[[[2.0]]]]), w, torch.tensor([1.0, -1.0]))
    assert y.tolist() == [[[[1.0, 3.0], [5.0, 7.0]], [[7.0, 9.0], [11.0, 13.0]]]]


def test_conv_transpose_2x2_gradcheck_and_bad_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 2, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(conv_transpose_2x2, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: conv_transpose_2x2(x, w), (x, w))
    with pytest.raises(ValueError, match="weight"):
        conv_transpose_2x2(torch.randn(1, 3, 2, 2), torch.randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        conv_transpose_2x2(torch.randn(1, 4, 2, 2), torch.randn(3, 2, 2, 2))
    with pytest.raises(ValueError, match="bias"):
        conv_transpose_2x2(torch.randn(1, 3, 2, 2), torch.randn(3, 2, 2, 2), torch.randn(3))
    with pytest.raises(ValueError, match="output_size"):
        PatchConvTranspose2d(3, 2)(torch.randn(1, 3, 2, 2), output_size=[4, 4])


def test_frozen_adapter_has_no_gradient_but_batchnorm_statistics_move():
    adapter = PyramidAdapter(8, trainable=False).train()
    assert not any(p.requires_grad for p in adapter.parameters())
    before = adapter.levels[0][2].running_mean.clone()
    adapter([torch.randn(2, 8, 3, 3) for _ in range(4)])
    assert not torch.equal(before, adapter.levels[0][2].running_mean)


# ---------------------------------------------------------------------------------------------- matching
def test_match_scores_hand_computed():
    # a 1×2 image with E = 2: pixel 0 = (3, 4) → unit (0.6, 0.8); pixel 1 = (0, -2) → (0, -1)
    pixels = torch.tensor([[[[3.0, 0.0]], [[4.0, -2.0]]]])  # (1, 2, 1, 2)
    text = torch.tensor([[1.0, 0.0], [0.0, 5.0]])  # class 0 along x, class 1 along y
    scores = match_scores(pixels, text)
    assert scores.shape == (1, 2, 1, 2)
    assert torch.allclose(scores[0, :, 0], torch.tensor([[0.6, 0.0], [0.8, -1.0]]))


@pytest.mark.parametrize("init", [1.0, 0.1, 0.01, 0.001])
def test_residual_scales_init(init):
    m = CoAttentionMatching(32, 16, 4, 3, residual_init=init)
    expected = torch.full((32,), init)
    assert torch.equal(m.gamma.detach(), expected) and torch.equal(m.beta.detach(), expected)


def test_co_attention_shapes_and_unchained_quirk():
    torch.manual_seed(0)
    m = CoAttentionMatching(32, 16, 4, 3).eval()
    t, v = torch.randn(2, 3, 32), torch.randn(2, 1 + 12, 32)
    t2, v2 = m(t, v)
    assert t2.shape == t.shape and v2.shape == v.shape
    (t2.sum() + v2.sum()).backward()
    for stream in (m.text_layers, m.visual_layers):
        assert all(p.grad is None and not p.requires_grad for layer in stream[:-1] for p in layer.parameters())
        assert all(p.grad is not None for p in stream[-1].parameters())
    # unchained output = the last layer alone
    with torch.no_grad():
        ref = t + m.gamma * m.text_out(m.text_layers[2](m.text_in(t), m.visual_in(v)))
    assert torch.allclose(t2, ref, atol=1e-6)


def test_co_attention_chained_and_without_visual_update():
    torch.manual_seed(0)
    m = CoAttentionMatching(32, 16, 4, 3, chained=True, visual_update=False).eval()
    assert not hasattr(m, "beta") and not hasattr(m, "visual_layers")
    t, v = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    t2, v2 = m(t, v)
    assert v2 is v
    t2.sum().backward()
    assert all(p.grad is not None for p in m.text_layers.parameters())
    unchained = CoAttentionMatching(32, 16, 4, 3, visual_update=False).eval()
    unchained.load_state_dict(m.state_dict())
    assert not torch.allclose(unchained(t, v)[0], t2)


# ---------------------------------------------------------------------------------------------- decoder
def test_fpn_head_branch_depths_and_decoder_shapes():
    head = FPNHead([8] * 4, 8, 3)
    assert [len(b) for b in head.branches] == [1, 1, 2, 3]
    for grid in [(4, 4), (3, 5)]:
        levels = [torch.randn(2, 16, *s) for s in pyramid_sizes(grid)]
        scores = torch.randn(2, 3, *grid)
        for mode, extra in (("all", [3] * 4), ("one", [0, 0, 3, 0]), ("none", [0] * 4)):
            dec = TextGuidedDecoder(16, 3, 8, score_concat=mode).eval()
            assert [c.in_channels for c in dec.neck.lateral] == [16 + e for e in extra]
            assert dec(levels, scores).shape == (2, 3, 4 * grid[0], 4 * grid[1])
        joined = concat_scores(levels, scores)
        assert torch.allclose(joined[0][:, 16:], F.interpolate(scores, size=levels[0].shape[-2:], mode="bilinear",
                                                                align_corners=True))


def test_fpn_neck_with_extras_equals_the_neck_of_the_concatenation():
    """The decoder hands the resized scores beside the levels; the laterals of the two parts
    are the laterals of their concatenation (to float rounding), gradients included."""
    torch.manual_seed(0)
    levels = [torch.randn(2, 16, *s, requires_grad=True) for s in pyramid_sizes((3, 5))]
    scores = torch.randn(2, 3, 3, 5, requires_grad=True)
    for mode in ("all", "one", "none"):
        dec = TextGuidedDecoder(16, 3, 8, score_concat=mode).eval()
        ref = dec.head(dec.neck(concat_scores(levels, scores, mode)))
        out = dec(levels, scores)
        assert torch.allclose(out, ref, atol=1e-5)
        grads = torch.autograd.grad(out.square().sum(), [scores, *levels, *dec.neck.parameters()], allow_unused=True)
        refs = torch.autograd.grad(ref.square().sum(), [scores, *levels, *dec.neck.parameters()], allow_unused=True)
        for got, want in zip(grads, refs):
            assert (got is None) == (want is None)
            assert got is None or torch.allclose(got, want, atol=1e-4)
    neck = FPNNeck([16 + 3, 16, 16, 16], 8)
    with pytest.raises(ValueError, match=r"level 0: 16 \+ 0 channels, but its lateral conv takes 19"):
        neck([torch.randn(1, 16, *s) for s in pyramid_sizes((2, 2))])
    with pytest.raises(ValueError, match="4 levels but 3 extras"):
        neck([torch.randn(1, 16, *s) for s in pyramid_sizes((2, 2))], [None] * 3)


@pytest.mark.parametrize("mode", ["all", "one", "none"])
def test_decoder_folds_the_adapters_last_layers_into_its_laterals(mode):
    """``split_last`` + the decoder with ``upsample`` give the logits (and gradients) of the plain
    adapter → decoder path: the transposed convs of levels 0 and 1 and the 1×1 laterals compose."""
    torch.manual_seed(1)
    adapter = PyramidAdapter(16).eval()
    dec = TextGuidedDecoder(16, 3, 8, score_concat=mode).eval()
    stages = [torch.randn(2, 16, 3, 5, requires_grad=True) for _ in range(4)]
    scores = torch.randn(2, 3, 3, 5)
    maps, last = adapter.split_last(stages)
    assert [u is not None for u in last] == [True, True, False, False]
    assert [tuple(m.shape[-2:]) for m in maps] == [(6, 10), (3, 5), (3, 5), (1, 2)]
    full = adapter(stages)
    assert all(torch.allclose(u(m) if u is not None else m, f, atol=1e-6) for m, u, f in zip(maps, last, full))
    ref, out = dec(full, scores), dec(maps, scores, last)
    assert torch.allclose(out, ref, atol=1e-5)
    params = [*stages, *adapter.parameters(), *dec.parameters()]
    for got, want in zip(torch.autograd.grad(out.sum(), params, allow_unused=True),
                         torch.autograd.grad(ref.sum(), params, allow_unused=True)):
        assert (got is None) == (want is None) and (got is None or torch.allclose(got, want, atol=1e-4))
    with pytest.raises(ValueError, match="upsampling layer that takes 16"):
        dec.neck([torch.randn(2, 8, 3, 5), *maps[1:]], resized_scores([tuple(f.shape[-2:]) for f in full], scores,
                                                                       mode), last)


# ---------------------------------------------------------------------------------------------- network
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("preset", ["official", "table4_coattn"])
def test_net_shapes(clip, size, preset):
    net = make_net(clip, preset)
    out = net(images(2, *size))
    h, w = size[0] // 16, size[1] // 16
    assert out["score_map"].shape == (2, 3, h, w) and out["logits"].shape == (2, 3, 4 * h, 4 * w)
    assert out["logits"].dtype == torch.float32 and out["score_map"].abs().max() <= 1.0 + 1e-5


def _grads(net):
    return {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("preset", ["official", "paper"])
def test_gradients_reach_exactly_the_trainable_parameters(clip, preset):
    net = make_net(clip, preset).train()
    out = net(images(2, 64, 80))
    (out["logits"].logsumexp(1).mean() + out["score_map"].square().mean()).backward()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert not any(p.requires_grad or p.grad is not None for p in net.clip.parameters())
    assert not any(n.startswith("encoder.clip.") for n in trainable)
    if preset == "official":  # only the last co-attention layer of each stream is used (official quirk)
        assert not any(n.startswith("adapter.") or "_layers.0." in n or "_layers.1." in n for n in trainable)
        assert any("_layers.2." in n for n in trainable)
    else:
        assert any(n.startswith("adapter.") for n in trainable) and any("_layers.0." in n for n in trainable)
    assert _grads(net) == trainable
    group_params = {id(p) for g in net.param_groups(1e-4) for p in g["params"]}
    assert group_params == {id(p) for n, p in net.named_parameters() if n in trainable}
    names = [g["name"] for g in net.param_groups(1e-4)]
    assert names == (["prompt", "matching", "decoder"] if preset == "official"
                     else ["prompt", "adapter", "matching", "decoder"])
    assert all(g["lr"] == 1e-4 for g in net.param_groups(1e-4, weight_decay=3e-5))


def test_presets_differ_exactly_in_their_documented_keys():
    official, paper = PRESETS["official"], PRESETS["paper"]
    assert {k for k in official if official[k] != paper[k]} == set(PAPER_VS_OFFICIAL)
    for table in (TABLE4, TABLE5, TABLE8):
        for name, overrides in table.items():
            diff = {k for k in official if official[k] != PRESETS[name][k]}
            assert diff == {k for k, v in overrides.items() if official[k] != v}, name
            assert name in PAPER_MIOU
    assert PRESETS["table4_full"] == official and PRESETS["table5_n16"]["n_context"] == 16
    assert PRESETS["table8_init1e-3"]["residual_init"] == 0.001
    assert resolve_settings("paper", n_context=16)["n_context"] == 16
    with pytest.raises(ValueError, match="did you mean 'paper'"):
        resolve_settings("papr")
    with pytest.raises(TypeError, match="did you mean 'n_context'"):
        resolve_settings("official", n_contexts=4)


def test_preset_switches_build_what_they_say(clip):
    direct = make_net(clip, "table4_direct_clip")
    assert direct.matching is None and direct.adapter is None and direct.decoder is None
    assert not list(direct.parameters()) or not any(p.requires_grad for p in direct.parameters())
    assert direct.param_groups(1e-4) == []
    coattn = make_net(clip, "table4_coattn")
    assert coattn.matching is not None and not any(True for _ in coattn.prompt.parameters())
    assert make_net(clip, "table4_coattn_prompt").prompt.context.shape == (8, 64)
    ablated = make_net(clip, "table4_coattn_prompt_adapter")
    assert ablated.decoder.score_concat == "one" and ablated.adapter is not None
    assert make_net(clip, "table5_n2").prompt.context.shape == (2, 64)
    assert torch.equal(make_net(clip, "table8_init1e-2").matching.gamma.detach(), torch.full((32,), 0.01))
    paper = make_net(clip, "paper")
    assert paper.matching.chained and paper.adapter.trainable and not paper.encoder.cls_embedding_twice
    assert paper.encoder.drop_path == 0.0
    with pytest.raises(ValueError, match="pyramid_adapter=True"):
        make_net(clip, pyramid_adapter=False)
    # no decoder: logits are the score map / 0.07, resized to 4h × 4w
    out = coattn.eval()(images(1, 48, 64))
    ref = F.interpolate(out["score_map"] / 0.07, size=(12, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(out["logits"], ref)


def test_determinism(clip):
    a, b = make_net(clip, seed=3).eval(), make_net(clip, seed=3).eval()
    x = images(2)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and (not isinstance(pa, torch.Tensor) or torch.equal(pa, pb)), na
    with torch.no_grad():
        oa, ob = a(x), b(x)
    assert torch.equal(oa["logits"], ob["logits"]) and torch.equal(oa["score_map"], ob["score_map"])


def test_text_is_encoded_once_and_cached_without_gradients(clip):
    net = make_net(clip).eval()
    calls = []
    original = net.prompt.forward
    net.prompt.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    x = images(3)
    with torch.no_grad():
        first = net(x)["logits"]
        net(x)
        assert len(calls) == 1  # cached at inference
        net.prompt.context.add_(0.5)  # an optimiser step changes the context in place
        assert not torch.allclose(net(x)["logits"], first) and len(calls) == 2
    net.train()
    net(x)["logits"].sum().backward()
    assert len(calls) == 3 and net.prompt.context.grad is not None  # always fresh with gradients
    fixed = make_net(clip, "table4_coattn").eval()
    with torch.no_grad():
        fixed(x)
        hits = clip.cache_hits
        fixed(x)
    assert clip.cache_hits == hits + 1  # a fixed template is cached by the CLIP model


def test_state_dict_leaves_clip_out_and_round_trips(clip):
    net = make_net(clip, "paper", seed=1).eval()
    state = net.state_dict()
    assert state and not any(k.startswith("encoder.clip.") for k in state)
    other = make_net(clip, "paper", seed=2).eval()
    other.load_state_dict(state, strict=True)
    x = images(1)
    with torch.no_grad():
        assert torch.allclose(net(x)["logits"], other(x)["logits"])


def test_bad_inputs(clip):
    net = make_net(clip)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="at least 2×2 patches"):
        net(torch.rand(1, 3, 16, 64))
    with pytest.raises(ValueError, match="class_names"):
        WeakCLIPNet("background", clip_model=clip)


# ---------------------------------------------------------------------------------------------- converter
# A checkpoint in the official layout (github hustvl/WeakCLIP) with tiny widths, and the official
# forward written out step by step on it, independently of the plugin's modules.

def _ln(n, g):
    return {"weight": 1 + 0.1 * torch.randn(n, generator=g), "bias": 0.1 * torch.randn(n, generator=g)}


def _lin(o, i, g, bias=True):
    out = {"weight": torch.randn(o, i, generator=g) / math.sqrt(i)}
    if bias:
        out["bias"] = 0.1 * torch.randn(o, generator=g)
    return out


def _bn(n, g):
    return {**_ln(n, g), "running_mean": 0.1 * torch.randn(n, generator=g),
            "running_var": 0.5 + torch.rand(n, generator=g), "num_batches_tracked": torch.tensor(7)}


def _put(state, prefix, params):
    state.update({f"{prefix}.{k}": v for k, v in params.items()})


def official_state(clip, k=3, n_ctx=8, d=16, layers=3, ch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, e, w = clip.vision_width, clip.embed_dim, clip.text_width
    s = {}
    own = clip.model.state_dict()
    for key, value in own.items():  # frozen CLIP, as the official backbone/text encoder hold it
        if key.startswith("visual."):
            s["backbone." + key[len("visual."):]] = value.clone()
        elif key in ("positional_embedding", "token_embedding.weight", "text_projection") or \
                key.startswith(("transformer.", "ln_final.")):
            s["text_encoder." + key] = value.clone()
    s["backbone.positional_embedding"] = interpolate_pos_embed(own["visual.positional_embedding"], (4, 4), (32, 32),
                                                               "bilinear")  # resized at load time to 512 // 16
    s["text_encoder.positional_embedding"] = own["positional_embedding"][: 5 + n_ctx].clone()
    s["contexts"] = torch.randn(1, n_ctx, w, generator=g)
    s["gamma"], s["beta"] = 0.1 + 0.05 * torch.randn(e, generator=g), 0.1 + 0.05 * torch.randn(e, generator=g)
    cd = "context_decoder"
    _put(s, f"{cd}.memory_proj.0", _ln(e, g)), _put(s, f"{cd}.memory_proj.1", _lin(d, e, g))
    _put(s, f"{cd}.memory_proj.2", _ln(d, g))
    _put(s, f"{cd}.text_proj.0", _ln(e, g)), _put(s, f"{cd}.text_proj.1", _lin(d, e, g))
    for stream, out in (("decoder", "out_proj"), ("anti_decoder", "anti_out_proj")):
        for i in range(layers):
            p = f"{cd}.{stream}.{i}"
            for attn in ("self_attn", "cross_attn"):
                for q in ("q_proj", "k_proj", "v_proj"):
                    _put(s, f"{p}.{attn}.{q}", _lin(d, d, g, bias=False))
                _put(s, f"{p}.{attn}.proj", _lin(d, d, g))
            for nrm in ("norm1", "norm2", "norm3"):
                _put(s, f"{p}.{nrm}", _ln(d, g))
            _put(s, f"{p}.mlp.0", _lin(4 * d, d, g)), _put(s, f"{p}.mlp.3", _lin(d, 4 * d, g))
        _put(s, f"{cd}.{out}.0", _ln(d, g)), _put(s, f"{cd}.{out}.1", _lin(e, d, g))

    def convt():
        return {"weight": torch.randn(c, c, 2, 2, generator=g) / math.sqrt(4 * c),
                "bias": 0.1 * torch.randn(c, generator=g)}

    _put(s, "backbone.fpn1.0", _ln(c, g)), _put(s, "backbone.fpn1.1", convt()), _put(s, "backbone.fpn1.2", _bn(c, g))
    _put(s, "backbone.fpn1.4", convt())
    _put(s, "backbone.fpn2.0", _ln(c, g)), _put(s, "backbone.fpn2.1", convt())
    _put(s, "backbone.fpn3", _ln(c, g)), _put(s, "backbone.fpn4.0", _ln(c, g))
    for i in range(4):
        _put(s, f"neck.lateral_convs.{i}.conv", {"weight": torch.randn(ch, c + k, 1, 1, generator=g) / math.sqrt(c + k),
                                                 "bias": 0.1 * torch.randn(ch, generator=g)})
        _put(s, f"neck.fpn_convs.{i}.conv", {"weight": torch.randn(ch, ch, 3, 3, generator=g) / math.sqrt(9 * ch),
                                             "bias": 0.1 * torch.randn(ch, generator=g)})
        for j in range(max(1, i)):
            _put(s, f"decode_head.scale_heads.{i}.{2 * j}.conv",
                 {"weight": torch.randn(ch, ch, 3, 3, generator=g) / math.sqrt(9 * ch)})
            _put(s, f"decode_head.scale_heads.{i}.{2 * j}.bn", _bn(ch, g))
    _put(s, "decode_head.conv_seg", {"weight": torch.randn(k, ch, 1, 1, generator=g) / math.sqrt(ch),
                                     "bias": 0.1 * torch.randn(k, generator=g)})
    return s


def _attention(q, k, v, heads, mask=None):
    b, n, d = q.shape
    m = k.shape[1]
    q = q.reshape(b, n, heads, d // heads)
    k = k.reshape(b, m, heads, d // heads)
    v = v.reshape(b, m, heads, d // heads)
    a = torch.einsum("bnhc,bmhc->bhnm", q, k) / math.sqrt(d // heads)
    if mask is not None:
        a = a + mask
    return torch.einsum("bhnm,bmhc->bnhc", a.softmax(-1), v).reshape(b, n, d)


def _clip_block(x, s, p, heads, mask=None):  # OpenAI's ResidualAttentionBlock, batch first
    d = x.shape[-1]
    y = F.layer_norm(x, (d,), s[f"{p}.ln_1.weight"], s[f"{p}.ln_1.bias"])
    qkv = F.linear(y, s[f"{p}.attn.in_proj_weight"], s[f"{p}.attn.in_proj_bias"])
    q, k, v = qkv.split(d, dim=-1)
    x = x + F.linear(_attention(q, k, v, heads, mask), s[f"{p}.attn.out_proj.weight"], s[f"{p}.attn.out_proj.bias"])
    y = F.layer_norm(x, (d,), s[f"{p}.ln_2.weight"], s[f"{p}.ln_2.bias"])
    y = F.gelu(F.linear(y, s[f"{p}.mlp.c_fc.weight"], s[f"{p}.mlp.c_fc.bias"]))  # the tiny CLIP's activation
    return x + F.linear(y, s[f"{p}.mlp.c_proj.weight"], s[f"{p}.mlp.c_proj.bias"])


def _seq(x, s, p, kinds):
    for i, kind in enumerate(kinds):
        if kind == "ln":
            x = F.layer_norm(x, (x.shape[-1],), s[f"{p}.{i}.weight"], s[f"{p}.{i}.bias"])
        else:
            x = F.linear(x, s[f"{p}.{i}.weight"], s[f"{p}.{i}.bias"])
    return x


def _official_layer(x, mem, s, p, heads):  # context_decoder TransformerDecoderLayer (eval: no dropout)
    def attn(name, q, kv):
        out = _attention(F.linear(q, s[f"{p}.{name}.q_proj.weight"]), F.linear(kv, s[f"{p}.{name}.k_proj.weight"]),
                         F.linear(kv, s[f"{p}.{name}.v_proj.weight"]), heads)
        return F.linear(out, s[f"{p}.{name}.proj.weight"], s[f"{p}.{name}.proj.bias"])

    d = x.shape[-1]
    y = F.layer_norm(x, (d,), s[f"{p}.norm1.weight"], s[f"{p}.norm1.bias"])
    x = x + attn("self_attn", y, y)
    x = x + attn("cross_attn", F.layer_norm(x, (d,), s[f"{p}.norm2.weight"], s[f"{p}.norm2.bias"]), mem)
    y = F.layer_norm(x, (d,), s[f"{p}.norm3.weight"], s[f"{p}.norm3.bias"])
    y = F.linear(F.gelu(F.linear(y, s[f"{p}.mlp.0.weight"], s[f"{p}.mlp.0.bias"])), s[f"{p}.mlp.3.weight"],
                 s[f"{p}.mlp.3.bias"])
    return x + y


def _bn_eval(x, s, p):
    return F.batch_norm(x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"])


def official_forward(s, clip, names, imgs, n_ctx=8, layers=3, out_indices=(0, 0, 0, 1)):
    """The official WeakCLIP forward (eval mode) on an official-layout state dict."""
    b = imgs.shape[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.conv2d((imgs - mean) / std, s["backbone.conv1.weight"], stride=16)
    _, cw, h, w = x.shape
    x = x.reshape(b, cw, h * w).permute(0, 2, 1)
    cls_emb = s["backbone.class_embedding"]
    x = torch.cat([cls_emb + torch.zeros(b, 1, cw), x], dim=1)
    pos = s["backbone.positional_embedding"]
    spatial = F.interpolate(pos[1:].reshape(1, 32, 32, cw).permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
    pos = torch.cat([(pos[0] + cls_emb).reshape(1, 1, cw), spatial.reshape(1, cw, h * w).permute(0, 2, 1)], dim=1)
    x = F.layer_norm(x + pos, (cw,), s["backbone.ln_pre.weight"], s["backbone.ln_pre.bias"])
    feats = []
    heads_v = cw // 32
    for i in range(2):
        x = _clip_block(x, s, f"backbone.transformer.resblocks.{i}", heads_v)
        for j in out_indices:
            if j == i:
                feats.append((len(feats), x[:, 1:].permute(0, 2, 1).reshape(b, cw, h, w)))
    stages = [f for _, f in sorted(feats)]
    # adapter (fpn1..fpn4)
    def gn(t, p):
        return F.group_norm(t, 1, s[f"{p}.weight"], s[f"{p}.bias"])

    l0 = gn(stages[0], "backbone.fpn1.0")
    l0 = F.conv_transpose2d(l0, s["backbone.fpn1.1.weight"], s["backbone.fpn1.1.bias"], stride=2)
    l0 = F.gelu(_bn_eval(l0, s, "backbone.fpn1.2"))
    l0 = F.conv_transpose2d(l0, s["backbone.fpn1.4.weight"], s["backbone.fpn1.4.bias"], stride=2)
    l1 = F.conv_transpose2d(gn(stages[1], "backbone.fpn2.0"), s["backbone.fpn2.1.weight"], s["backbone.fpn2.1.bias"],
                            stride=2)
    l2 = gn(stages[2], "backbone.fpn3")
    l3 = F.max_pool2d(gn(stages[3], "backbone.fpn4.0"), 2, 2)
    x = F.layer_norm(x, (cw,), s["backbone.ln_post.weight"], s["backbone.ln_post.bias"]) @ s["backbone.proj"]
    e = x.shape[-1]
    visual_context = torch.cat([x[:, :1], x[:, 1:]], dim=1)
    # text encoder with contexts after [SOS]
    texts = clip.tokenize(list(names), context_length=5)
    t = F.embedding(texts, s["text_encoder.token_embedding.weight"])
    ctx = s["contexts"].expand(len(names), -1, -1)
    t = torch.cat([t[:, :1], ctx, t[:, 1:]], dim=1) + s["text_encoder.positional_embedding"]
    n = t.shape[1]
    mask = torch.full((n, n), float("-inf")).triu_(1)
    heads_t = t.shape[-1] // 32
    for i in range(2):
        t = _clip_block(t, s, f"text_encoder.transformer.resblocks.{i}", heads_t, mask)
    t = F.layer_norm(t, (t.shape[-1],), s["text_encoder.ln_final.weight"], s["text_encoder.ln_final.bias"])
    text = t[torch.arange(len(names)), texts.argmax(-1) + n_ctx] @ s["text_encoder.text_projection"]
    text = text.unsqueeze(0).expand(b, -1, -1)
    # context decoder, unchained: every layer gets the projected inputs, the last one's output is used
    vis = _seq(visual_context, s, "context_decoder.memory_proj", ["ln", "lin", "ln"])
    txt = _seq(text, s, "context_decoder.text_proj", ["ln", "lin"])
    for i in range(layers):
        text_diff = _official_layer(txt, vis, s, f"context_decoder.decoder.{i}", 4)
    for i in range(layers):
        visual_diff = _official_layer(vis, txt, s, f"context_decoder.anti_decoder.{i}", 4)
    text_diff = _seq(text_diff, s, "context_decoder.out_proj", ["ln", "lin"])
    visual_diff = _seq(visual_diff, s, "context_decoder.anti_out_proj", ["ln", "lin"])
    visual_context = visual_context + s["beta"] * visual_diff
    pixels = visual_context[:, 1:].permute(0, 2, 1).reshape(b, e, h, w)
    text = text + s["gamma"] * text_diff
    score = torch.einsum("bchw,bkc->bkhw", F.normalize(pixels, dim=1), F.normalize(text, dim=2))
    # pyramid-queried features, FPN neck, FPN head
    levels = [torch.cat([f, F.interpolate(score, size=f.shape[2:], mode="bilinear", align_corners=True)], 1)
              for f in (l0, l1, l2, l3)]
    lat = [F.conv2d(f, s[f"neck.lateral_convs.{i}.conv.weight"], s[f"neck.lateral_convs.{i}.conv.bias"])
           for i, f in enumerate(levels)]
    for i in range(3, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
    outs = [F.conv2d(f, s[f"neck.fpn_convs.{i}.conv.weight"], s[f"neck.fpn_convs.{i}.conv.bias"], padding=1)
            for i, f in enumerate(lat)]

    def scale_head(i, f):
        for j in range(max(1, i)):
            f = F.relu(_bn_eval(F.conv2d(f, s[f"decode_head.scale_heads.{i}.{2 * j}.conv.weight"], padding=1), s,
                                f"decode_head.scale_heads.{i}.{2 * j}.bn"))
            if i > 0:
                f = F.interpolate(f, scale_factor=2, mode="bilinear", align_corners=False)
        return f

    out = scale_head(0, outs[0])
    for i in range(1, 4):
        out = out + F.interpolate(scale_head(i, outs[i]), size=out.shape[2:], mode="bilinear", align_corners=False)
    logits = F.conv2d(out, s["decode_head.conv_seg.weight"], s["decode_head.conv_seg.bias"])
    return logits, score


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_official_checkpoint_matches_the_official_forward(clip, size):
    state = official_state(clip)
    net = make_net(clip).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLIP weights in the file are the model's: no warning
        load_official_checkpoint(net, {"state_dict": state, "meta": {}})
    x = images(2, *size)
    with torch.no_grad():
        out = net(x)
        ref_logits, ref_score = official_forward(state, clip, NAMES, x)
    assert torch.allclose(out["score_map"], ref_score, atol=1e-5)
    assert torch.allclose(out["logits"], ref_logits, atol=1e-4, rtol=1e-4)


def test_converter_layout_and_strict_load(clip, tmp_path):
    state = official_state(clip)
    converted = convert_official_weakclip(state)
    assert not any(k.startswith(("encoder.", "backbone", "text_encoder")) for k in converted)
    assert converted["prompt.context"].shape == (8, 64)
    assert torch.equal(converted["adapter.levels.2.0.weight"], state["backbone.fpn3.weight"])
    assert torch.equal(converted["decoder.head.branches.3.2.conv.weight"],
                       state["decode_head.scale_heads.3.4.conv.weight"])
    assert torch.equal(converted["matching.text_layers.1.cross_attn.out.bias"],
                       state["context_decoder.decoder.1.cross_attn.proj.bias"])
    net = make_net(clip)
    net.load_state_dict({**net.state_dict(), **converted}, strict=True)
    assert set(converted) == set(net.state_dict()) - {"prompt._extra_state"}
    path = tmp_path / "weakclip_voc.pth"
    torch.save({"state_dict": state, "meta": {"iter": 20000}}, path)
    load_official_checkpoint(make_net(clip), path)  # from a file, any width/depth


def test_converter_errors(clip, tmp_path):
    net = make_net(clip)
    five = official_state(clip, k=5)
    path = tmp_path / "coco_weakclip.pth"
    torch.save({"state_dict": five}, path)
    with pytest.raises(WeightsError, match=r"coco_weakclip\.pth predicts 5 classes .* 3 class names"):
        load_official_checkpoint(net, path)
    wide = official_state(clip)
    wide["backbone.conv1.weight"] = torch.randn(128, 3, 16, 16)
    wide["backbone.proj"] = torch.randn(128, 48)
    torch.save({"state_dict": wide}, tmp_path / "vitl.pth")
    with pytest.raises(WeightsError, match=r"vitl\.pth was trained with a CLIP checkpoint of another width"):
        load_official_checkpoint(net, tmp_path / "vitl.pth")
    with pytest.raises(WeightsError, match="built with learnable_prompt=False"):
        load_official_checkpoint(make_net(clip, "table4_coattn_prompt_adapter", learnable_prompt=False),
                                 official_state(clip))
    with pytest.raises(WeightsError, match="pass n_context=4"):
        load_official_checkpoint(net, official_state(clip, n_ctx=4))
    with pytest.raises(WeightsError, match="keys of no known WeakCLIP module: decode_head.extra.weight"):
        convert_official_weakclip({**official_state(clip), "decode_head.extra.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="not an official WeakCLIP checkpoint"):
        load_official_checkpoint(net, {"conv1.weight": torch.zeros(1)})
    other = official_state(clip)
    other["backbone.ln_post.weight"] = other["backbone.ln_post.weight"] + 1.0
    with pytest.warns(UserWarning, match=r"CLIP weights inside .* differ .* visual\.ln_post\.weight"):
        load_official_checkpoint(net, other)
    with pytest.raises(WeightsError, match="differ from the model's CLIP"):
        load_official_checkpoint(net, other, clip_check="error")


def test_clip_precision_and_own_clip():
    torch.manual_seed(0)
    net = WeakCLIPNet(NAMES, clip_model=TINY_CLIP, clip_precision="bf16", **TINY).eval()
    assert net.clip.precision == "bf16" and net.clip.source == "random initialisation"
    ref = WeakCLIPNet(NAMES, clip_model=net.clip, **TINY).eval()
    ref.load_state_dict(net.state_dict())
    x = images(1)
    with torch.no_grad():
        out = net(x)
        net.clip.precision = "fp32"
        full = ref(x)
    assert out["logits"].dtype == torch.float32 and out["score_map"].dtype == torch.float32
    assert not torch.equal(out["score_map"], full["score_map"])
    assert torch.allclose(out["score_map"], full["score_map"], atol=0.05)
