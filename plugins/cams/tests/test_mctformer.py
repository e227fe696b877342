"""MCTformer V1/V2: shapes, ranges, gradients, flip, determinism, bad input, and equality with a
reference written in the official code's structure and state-dict layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wsss_kit
from wsss_cams.convert_mctformer import checkpoint_version, convert_mctformer
from wsss_cams.mctformer import MCTformer, MCTformerV1, MCTformerV2
from wsss_cams.vit_tokens import block_with_attention
from wsss_kit.errors import WeightsError

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
DIM, DEPTH, HEADS, MLP = 64, 6, 2, 192  # timm's test_vit
C = 3


def tiny(version: int, **kw) -> MCTformer:
    torch.manual_seed(0)
    kw.setdefault("img_size", 64)
    cls = MCTformerV1 if version == 1 else MCTformerV2
    return cls(C, backbone="test_vit", **kw)


# --------------------------------------------------------------------------- official-structure reference
class RefAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (d // HEADS) ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d)), a


class RefMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(DIM, MLP), nn.Linear(MLP, DIM)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM, eps=1e-6), nn.LayerNorm(DIM, eps=1e-6)
        self.attn, self.mlp = RefAttention(), RefMlp()

    def forward(self, x):
        o, a = self.attn(self.norm1(x))
        x = x + o
        return x + self.mlp(self.norm2(x)), a


class RefPatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, DIM, 16, 16)


class RefMCTformer(nn.Module):
    """The official V1/V2 network's structure, names and CAM procedure, written from its description."""

    def __init__(self, version: int, grid: int = 4) -> None:
        super().__init__()
        self.version, self.grid = version, grid
        self.patch_embed = RefPatchEmbed()
        self.cls_token = nn.Parameter(torch.randn(1, C, DIM) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, C + grid * grid, DIM) * 0.5)
        self.blocks = nn.ModuleList(RefBlock() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)  # present in the official state dict, unused
        self.head = nn.Conv2d(DIM, C, 3, padding=1) if version == 2 else nn.Linear(DIM, C)
        for p in self.parameters():  # non-trivial values everywhere, norms included
            p.data.add_(torch.randn_like(p) * 0.05)

    def pos(self, h, w):
        n = self.grid * self.grid
        if h // 16 * (w // 16) == n and h == w:
            return self.pos_embed
        patch = self.pos_embed[:, C:].reshape(1, self.grid, self.grid, DIM).permute(0, 3, 1, 2)
        h0, w0 = h // 16 + 0.1, w // 16 + 0.1
        patch = F.interpolate(patch, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
        return torch.cat([self.pos_embed[:, :C], patch.permute(0, 2, 3, 1).reshape(1, -1, DIM)], 1)

    def forward(self, x, n_layers=3):
        b, _, h, w = x.shape
        t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], 1)
        t = t + self.pos(h, w)
        attns = []
        for blk in self.blocks:
            t, a = blk(t)
            attns.append(a)
        attn = torch.stack(attns).mean(2)  # layers × B × N × N
        logits = t[:, :C].mean(-1)
        gh, gw = h // 16, w // 16
        cams = attn[-n_layers:].sum(0)[:, :C, C:]
        patch_logits = None
        if self.version == 2:
            fmap = self.head(t[:, C:].reshape(b, gh, gw, DIM).permute(0, 3, 1, 2))
            patch_logits = fmap.mean((2, 3))
            cams = cams * F.relu(fmap).flatten(2)
        patch_attn = attn[:, :, C:, C:].sum(0)
        cams = torch.matmul(patch_attn.unsqueeze(1), cams.reshape(b, C, -1, 1)).reshape(b, C, gh, gw)
        return logits, patch_logits, cams

    def official_cams(self, image, target, scales=(1.0,)):
        """The generation script: passes [s, flip(s)] per scale, resize, × target, flip back, sum, min–max."""
        h, w = image.shape[-2:]
        total = 0
        for s in scales:
            size = (round(h * s), round(w * s))
            scaled = image if s == 1.0 else F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            for i, view in enumerate((scaled, scaled.flip(-1))):
                _, _, cam = self((view - MEAN.to(view)) / STD.to(view))
                cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[0]
                cam = cam * target.view(C, 1, 1)
                total = total + (cam.flip(-1) if i % 2 == 1 else cam)
        out = torch.zeros_like(total)
        for c in range(C):
            if target[c] > 0:
                m = total[c]
                out[c] = (m - m.min()) / (m.max() - m.min() + 1e-8)
        return out


@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def official(request, tmp_path):
    torch.manual_seed(1)
    ref = RefMCTformer(request.param).eval()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": ref.state_dict()}, path)
    model = tiny(request.param, checkpoint=str(path)).eval()
    return ref, model, path


@pytest.mark.parametrize("size", [(64, 64), (72, 100), (96, 64)])
def test_equals_official_logits_and_cams(official, size):
    # float64 on both sides, so that any difference is a difference of method, not of rounding
    ref, model, _ = official
    ref, model = ref.double(), model.double()
    torch.manual_seed(2)
    image = torch.rand(1, 3, *size, dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        ref_logits, ref_patch, _ = ref((image - MEAN.double()) / STD.double())
        out = model(image)
        assert torch.allclose(out["logits"], ref_logits, atol=1e-10)
        if ref.version == 2:
            assert torch.allclose(out["patch_logits"], ref_patch, atol=1e-10)
        for scales in [(1.0,), (1.0, 0.5, 1.5)]:
            expected = ref.official_cams(image, target, scales)
            got = model.cams(image, target[None], scales=scales, flip=True)[0]
            assert torch.allclose(got, expected, atol=1e-9), (scales, (got - expected).abs().max())


def test_converter_drops_unused_and_detects_version(official):
    ref, _, _ = official
    state = convert_mctformer(ref.state_dict(), version=ref.version, num_classes=C)
    assert not any(k.startswith("norm.") for k in state)
    assert ("head.weight" in state) == (ref.version == 2)
    assert checkpoint_version(ref.state_dict()) == ref.version


def test_checkpoint_errors(official, tmp_path):
    ref, _, path = official
    with pytest.raises(WeightsError, match="3 class tokens.*num_classes=5"):
        (MCTformerV1 if ref.version == 1 else MCTformerV2)(5, backbone="test_vit", img_size=64, checkpoint=str(path))
    other = MCTformerV2 if ref.version == 1 else MCTformerV1
    with pytest.raises(WeightsError, match=f"V{ref.version} checkpoint.*mctformer_v{ref.version}"):
        other(C, backbone="test_vit", img_size=64, checkpoint=str(path))
    with pytest.raises(WeightsError, match="pos_embed.*img_size=64"):
        (MCTformerV1 if ref.version == 1 else MCTformerV2)(C, backbone="test_vit", img_size=96,
                                                           checkpoint=str(path))


def test_checkpoint_of_another_architecture(tmp_path):
    resnet_like = {"resnet50.conv1.weight": torch.zeros(8, 3, 7, 7), "classifier.weight": torch.zeros(3, 8, 1, 1)}
    torch.save(resnet_like, tmp_path / "res50_cam.pth")
    with pytest.raises(WeightsError, match="ResNet CAM checkpoint.*resnet_cam"):
        tiny(2, checkpoint=str(tmp_path / "res50_cam.pth"))


def test_imagenet_weights_are_replicated_per_class(tmp_path):
    import timm

    torch.manual_seed(3)
    vit = timm.create_model("test_vit", img_size=32)  # grid 2×2: the loader must resize it to 4×4
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = tiny(1, weights=str(tmp_path / "vit.pth"))
    assert torch.equal(model.cls_token[0], vit.cls_token[0].expand(C, -1))
    assert torch.equal(model.pos_embed[0, :C], vit.pos_embed[0, :1].expand(C, -1))
    assert model.pos_embed.shape == (1, C + 16, DIM)
    assert torch.equal(model.blocks[2].mlp.fc1.weight, vit.blocks[2].mlp.fc1.weight)
    with pytest.raises(WeightsError, match="pass it as checkpoint="):
        torch.save({"model": RefMCTformer(1).state_dict()}, tmp_path / "mct.pth")
        tiny(1, weights=str(tmp_path / "mct.pth"))


# --------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_shapes_and_ranges(version, size):
    model = tiny(version).eval()
    images = torch.rand(2, 3, *size)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(images, labels)
    assert out["logits"].shape == (2, C) and out["loss"].ndim == 0
    assert ("patch_logits" in out) == (version == 2)
    with torch.no_grad():
        cams = model.cams(images, labels, scales=(1.0, 0.5), flip=True)
    assert cams.shape == (2, C, *size)
    assert cams.min() >= 0 and cams.max() <= 1
    assert (cams[labels == 0] == 0).all()
    for b, c in labels.nonzero().tolist():  # min–max: every present class spans [0, 1)
        assert cams[b, c].min() == 0 and cams[b, c].max() > 0.99
    assert model.raw_cams(images).shape == (2, C, size[0] // 16, size[1] // 16)


@pytest.mark.parametrize("version", [1, 2])
def test_gradients_reach_every_trainable_parameter(version):
    model = tiny(version).train()
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    model(torch.rand(2, 3, 64, 64), labels)["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    groups = model.param_groups(1e-3)
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and id(model.cls_token) in no_decay and id(model.pos_embed) in no_decay


def test_v2_loss_is_sum_of_both_terms():
    model = tiny(2).eval()
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    out = model(torch.rand(1, 3, 64, 64), labels)
    expected = (F.multilabel_soft_margin_loss(out["logits"], labels)
                + F.multilabel_soft_margin_loss(out["patch_logits"], labels))
    assert torch.allclose(out["loss"], expected)


def test_attention_unrolling_matches_timm_block():
    model = tiny(1).eval()
    x, _ = model.tokens(torch.rand(2, 3, 64, 48))
    for block in model.blocks:
        y, attn = block_with_attention(block, x)
        assert torch.allclose(y, block(x), atol=1e-5)
        assert torch.allclose(attn.sum(-1), torch.ones_like(attn.sum(-1)), atol=1e-5)
        x = y


def test_training_forward_is_fused_and_cams_without_patch_refine_are_unchanged(monkeypatch):
    import timm.layers.config

    monkeypatch.setattr(timm.layers.config, "_USE_FUSED_ATTN", 0)  # timm's switch off: MCTformer still asks for SDPA
    model = tiny(2, patch_refine=False, cam_layers=2).eval()
    assert all(block.attn.fused_attn for block in model.blocks)
    images = torch.rand(2, 3, 64, 48)
    with torch.no_grad():
        got = model.raw_cams(images)  # the first DEPTH - 2 blocks run fused (their attention is unread)
        x, grid = model.tokens(images)
        maps = 0
        for i, block in enumerate(model.blocks):
            x, attn = block_with_attention(block, x)
            if i >= DEPTH - 2:
                maps = maps + attn.mean(dim=1)[:, :C, C:]
        patch_cam = F.relu(model.head(model._patch_map(x, grid))).flatten(2)
        expected = (maps * patch_cam).reshape(2, C, *grid)
    torch.testing.assert_close(got, expected)


def test_flip_aggregation_is_mirror_symmetric():
    model = tiny(2).eval()
    image = torch.rand(1, 3, 64, 80)
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    with torch.no_grad():
        cams = model.cams(image, labels, flip=True)
        mirrored = model.cams(image.flip(-1), labels, flip=True)
        single = model.cams(image, labels, flip=False)
    assert torch.allclose(cams, mirrored.flip(-1), atol=1e-5)
    assert not torch.allclose(cams, single, atol=1e-3)


def test_deterministic_under_seed():
    a, b = tiny(2), tiny(2)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    images, labels = torch.rand(1, 3, 64, 64), torch.tensor([[0.0, 1.0, 1.0]])
    with torch.no_grad():
        assert torch.equal(a.eval().cams(images, labels), b.eval().cams(images, labels))


def test_attention_type_variants_differ():
    images = torch.rand(1, 3, 64, 64)
    maps = {}
    for kind in ("fused", "patchcam", "attention"):
        with torch.no_grad():
            maps[kind] = tiny(2, attention_type=kind).eval().raw_cams(images)
    assert torch.allclose(maps["fused"], tiny(2, attention_type="fused").eval().raw_cams(images))
    assert not torch.allclose(maps["fused"], maps["patchcam"])
    assert not torch.allclose(maps["fused"], maps["attention"])


def test_bad_input():
    model = tiny(1).eval()
    with pytest.raises(ValueError, match="smaller than one 16×16 patch"):
        model.cams(torch.rand(1, 3, 12, 40), torch.ones(1, C))
    with pytest.raises(ValueError, match="empty label set"):
        model.cams(torch.rand(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="cam_layers must be an int in 1..6"):
        tiny(1, cam_layers=7)
    with pytest.raises(ValueError, match="V2 only"):
        tiny(1, attention_type="patchcam")
    with pytest.raises(ValueError, match="not a timm VisionTransformer|not a timm model"):
        MCTformerV1(C, backbone="resnet18")


def test_registry_entry_points_and_keywords():
    model = wsss_kit.create("cams", "mctformer_v1", num_classes=C, backbone="test_vit", img_size=64)
    assert isinstance(model, MCTformerV1) and model.version == 1
    with pytest.raises(Exception, match="cam_layer"):
        wsss_kit.create("cams", "mctformer_v2", num_classes=C, backbone="test_vit", cam_layer=3)
