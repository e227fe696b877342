"""The speed-ups of issue 15 leave MCTformer's results as they were: contiguous refined maps (and
the in-place normalisation) give the CAMs of the step-by-step computation; a training step with
the trainer's optimizer (fused AdamW) gives the loss and the updates of torch's per-parameter AdamW;
V1's last block, forming only the class-token rows its logits read, gives the whole block's rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsss_cams.losses import multilabel_soft_margin_loss
from wsss_cams.mctformer import MCTformer, MCTformerV1, MCTformerV2
from wsss_cams.vit_tokens import block_first_rows
from wsss_kit.engine import TrainConfig, build_optimizer

C = 3


def tiny(version: int, **kw) -> MCTformer:
    torch.manual_seed(0)
    cls = MCTformerV1 if version == 1 else MCTformerV2
    model = cls(C, backbone="test_vit", img_size=64, **kw)
    with torch.no_grad():  # non-trivial class tokens and head, so that every term shows
        model.cls_token.normal_(0, 0.5)
        if version == 2:
            model.head.weight.normal_(0, 0.2)
    return model


def reference_cams(model: MCTformer, image: torch.Tensor, labels: torch.Tensor,
                   scales: tuple[float, ...]) -> torch.Tensor:
    """The CAM recipe written out: every view its own forward, resized, un-mirrored, summed, masked,
    min-max normalised out of place (eps 1e-8)."""
    height, width = image.shape[-2:]
    total = torch.zeros(1, C, height, width, dtype=image.dtype)
    for s in scales:
        size = (round(height * s), round(width * s))
        scaled = image if size == (height, width) else F.interpolate(image, size=size, mode="bilinear",
                                                                      align_corners=False)
        for flipped in (False, True):
            maps = model.raw_cams(scaled.flip(-1) if flipped else scaled)
            maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
            total = total + (maps.flip(-1) if flipped else maps)
    total = total * labels[:, :, None, None]
    low = total.flatten(2).amin(2)[..., None, None]
    high = total.flatten(2).amax(2)[..., None, None]
    return (total - low) / (high - low + 1e-8) * (labels[:, :, None, None] != 0)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("patch_refine", [True, False])
@pytest.mark.parametrize("size", [(64, 80), (48, 48)])
def test_cams_equal_the_written_out_recipe(version: int, patch_refine: bool, size: tuple[int, int]) -> None:
    """In float64, where the order of the float operations does not show."""
    model = tiny(version, patch_refine=patch_refine).double().eval()
    torch.manual_seed(3)
    image = torch.rand(1, 3, *size, dtype=torch.float64)
    labels = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        raw = model.raw_cams(image)
        got = model.cams(image, labels, scales=(1.0, 0.75), flip=True)
        expected = reference_cams(model, image, labels, (1.0, 0.75))
    assert raw.is_contiguous()  # the layout the resize and the per-class reductions run fast on
    assert got.shape == (1, C, *size) and float(got[0, 1].abs().max()) == 0.0
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert float(got[0, 0].max()) > 0.99  # normalised, not all zero


@pytest.mark.parametrize("version", [1, 2])
def test_float32_cams_equal_the_previous_layout(version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before issue 15 the refined maps reached the resize in a channels-last layout; same values."""
    model = tiny(version).eval()
    torch.manual_seed(5)
    image, labels = torch.rand(1, 3, 64, 80), torch.tensor([[1.0, 1.0, 0.0]])
    with torch.no_grad():
        got = model.cams(image, labels)
        fast_raw = model.raw_cams
        monkeypatch.setattr(model, "raw_cams", lambda x: fast_raw(x).contiguous(memory_format=torch.channels_last))
        before = model.cams(image, labels)
    assert not model.raw_cams(image).is_contiguous()
    torch.testing.assert_close(got, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2])
def test_training_step_with_the_trainers_optimizer_equals_torchs_adamw(version: int) -> None:
    lr, wd = 1e-3, 0.05
    torch.manual_seed(4)
    images, labels = torch.rand(2, 3, 48, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    results = []
    for which in ("trainer", "torch"):
        model = tiny(version, drop_path_rate=0.0).train()
        if which == "trainer":
            opt = build_optimizer(model, TrainConfig(steps=1, lr=lr, optimizer="adamw", weight_decay=wd))
            assert opt.defaults["fused"] is True
        else:
            opt = torch.optim.AdamW(model.param_groups(lr), lr=lr, weight_decay=wd, foreach=False)
        losses = []
        for _ in range(2):
            loss = model(images, labels)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        results.append((losses, {k: v.detach().clone() for k, v in model.named_parameters()}))
    (losses_a, params_a), (losses_b, params_b) = results
    assert losses_a[0] == losses_b[0]  # the same forward
    assert losses_a[1] == pytest.approx(losses_b[1], rel=1e-5)
    start = dict(tiny(version).named_parameters())
    for name in params_a:
        assert not torch.equal(params_a[name], start[name].detach()), name
        torch.testing.assert_close(params_a[name], params_b[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("drop_path", [0.0, 0.5])
def test_block_first_rows_equals_the_whole_block(drop_path: float) -> None:
    model = tiny(1, drop_path_rate=drop_path).train()
    block = model.blocks[-1]
    torch.manual_seed(6)
    x = torch.randn(2, 20, 64, requires_grad=True)
    torch.manual_seed(7)
    whole = block(x)[:, :C]
    (whole * torch.arange(float(whole.numel())).view(whole.shape)).sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad()
    torch.manual_seed(7)  # the same drop-path draw: one per sample in both
    rows = block_first_rows(block, x, C)
    (rows * torch.arange(float(rows.numel())).view(rows.shape)).sum().backward()
    assert rows.shape == (2, C, 64)
    torch.testing.assert_close(rows, whole, rtol=1e-5, atol=1e-6)
    for got, expected in zip([x.grad] + [p.grad for p in block.parameters()], grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_v1_forward_reads_the_class_rows_of_the_last_block_only() -> None:
    """V1's logits (and their gradients) equal those of running every block on every token."""
    model = tiny(1, drop_path_rate=0.0).train()
    torch.manual_seed(8)
    images, labels = torch.rand(2, 3, 48, 64), torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss = model(images, labels)["loss"]
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    x, _ = model.tokens(images)
    for block in model.blocks:
        x = block(x)
    expected = multilabel_soft_margin_loss(x[:, :C].mean(dim=-1), labels)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
