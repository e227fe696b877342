"""The torch dense CRF (permutohedral lattice in torch ops) against pydensecrf, the reference."""

import numpy as np
import pytest
import torch

import wsss_kit.crf.permutohedral as permutohedral
from wsss_kit.crf import (
    BACKENDS,
    DenseCRF,
    DenseCRFTorch,
    dense_crf,
    dense_crf_batch,
    dense_crf_torch,
    param_names,
    resolve_backend,
)
from wsss_kit.crf.permutohedral import PermutohedralLattice
from wsss_kit.errors import ConfigError

pytest.importorskip("pydensecrf.densecrf")
ndimage = pytest.importorskip("scipy.ndimage")

H, W = 48, 64


def blob_scene(seed: int, k: int = 5, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """A natural-image-like scene: ``k - 1`` coloured discs on a background, with texture noise,
    and CAM-like probabilities (blurred, shifted, noisy class evidence) that the CRF must clean up.

    Returns ``uint8 (h, w, 3)`` and ``float32 (k, h, w)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    lab = np.zeros((h, w), int)
    for c in range(1, k):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(h / 7, h / 3)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c
    colours = rng.integers(0, 256, (k, 3))
    img = colours[lab] + ndimage.gaussian_filter(rng.normal(0, 20, (h, w, 3)), (1, 1, 0))
    img = np.clip(img, 0, 255).astype(np.uint8)
    evidence = np.eye(k)[np.roll(lab, (2, -3), (0, 1))].transpose(2, 0, 1) * 2.0  # CAMs are off by a few px
    logits = ndimage.gaussian_filter(evidence + rng.normal(0, 1.2, evidence.shape), (0, 2.5, 2.5))
    p = np.exp(3 * logits)
    return img, (p / p.sum(0)).astype(np.float32)


def photo_scene(name: str, k: int = 4, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    """A real photograph (scikit-image's sample data) resized small, with CAM-like unaries made from
    its coarse colour clusters (blurred and noisy)."""
    data = pytest.importorskip("skimage.data")
    transform = pytest.importorskip("skimage.transform")
    img = getattr(data, name)()[..., :3]
    img = (transform.resize(img, (h, w), anti_aliasing=True) * 255).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    centres = img.reshape(-1, 3)[rng.choice(h * w, k, replace=False)].astype(float)
    dist = ((img[None].astype(float) - centres[:, None, None]) ** 2).sum(-1)
    lab = dist.argmin(0)
    evidence = np.eye(k)[lab].transpose(2, 0, 1) * 2.0
    logits = ndimage.gaussian_filter(evidence + rng.normal(0, 1.0, evidence.shape), (0, 3, 3))
    p = np.exp(3 * logits)
    return img, (p / p.sum(0)).astype(np.float32)


def run_torch(img: np.ndarray, p: np.ndarray, params="default", **kwargs) -> np.ndarray:
    out = dense_crf_torch(torch.from_numpy(p)[None], torch.from_numpy(img).permute(2, 0, 1)[None], params, **kwargs)
    return out[0].numpy()


SCENES = [("blobs", 1), ("blobs", 2), ("photo", "astronaut"), ("photo", "coffee"), ("photo", "chelsea")]


def scene(kind, arg):
    return blob_scene(arg) if kind == "blobs" else photo_scene(arg)


# ---------------------------------------------------------------- agreement with pydensecrf
@pytest.mark.parametrize("name", param_names())
def test_labels_agree_with_pydensecrf_for_every_named_set(name):
    changed = []
    for kind, arg in SCENES:
        img, p = scene(kind, arg)
        ref = dense_crf(img, p, name)
        out = run_torch(img, p, name)
        agreement = float((ref.argmax(0) == out.argmax(0)).mean())
        assert agreement >= 0.98, f"{name} on {kind} {arg}: {agreement:.4f} of the pixels agree"
        # the same model, not just the same labels: marginals equal to float rounding
        assert np.abs(ref - out).mean() < 1e-3, f"{name} on {kind} {arg}: mean |dQ| {np.abs(ref - out).mean()}"
        changed.append(float((ref.argmax(0) != p.argmax(0)).mean()))
    # the inputs are hard enough that the CRF moves labels (else agreement would say nothing)
    assert max(changed) > 0.03, changed


def test_function_api_backend_torch_equals_pydensecrf():
    img, p = blob_scene(3)
    ref = dense_crf(img, p, "weakclip_voc")
    out = dense_crf(img, p, "weakclip_voc", backend="torch")
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(ref - out).max() < 1e-3
    outs = dense_crf_batch([img, img[:40, :50]], [p, p[:, :40, :50]], "weakclip_voc", workers=0, backend="torch")
    refs = dense_crf_batch([img, img[:40, :50]], [p, p[:, :40, :50]], "weakclip_voc", workers=0)
    assert [o.shape for o in outs] == [(5, H, W), (5, 40, 50)]
    for o, r in zip(outs, refs):
        assert np.abs(o - r).max() < 1e-3


# ---------------------------------------------------------------- batch, shapes, dtypes, determinism
def test_batch_equals_per_image_results():
    scenes = [blob_scene(s) for s in (4, 5, 6)]
    imgs = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i, _ in scenes])
    probs = torch.stack([torch.from_numpy(p) for _, p in scenes])
    batch = dense_crf_torch(probs, imgs, "psa")
    for i in range(3):
        single = dense_crf_torch(probs[i : i + 1], imgs[i : i + 1], "psa")
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-6, rtol=0)


def test_valid_mask_equals_crf_over_the_present_classes_only():
    img, p = blob_scene(7, k=5)
    valid = torch.tensor([[True, False, True, True, False]])
    out = dense_crf_torch(torch.from_numpy(p)[None], torch.from_numpy(img).permute(2, 0, 1)[None], valid=valid)[0]
    assert torch.all(out[[1, 4]] == 0)
    ref = dense_crf(img, p[[0, 2, 3]], "default")  # pydensecrf on the sub-problem
    assert np.abs(out[[0, 2, 3]].numpy() - ref).max() < 1e-3


@pytest.mark.parametrize("size", [(17, 23), (40, 32)])
def test_shapes_dtypes_and_float_images(size):
    h, w = size
    img, p = blob_scene(8, k=3, h=h, w=w)
    u8 = torch.from_numpy(img).permute(2, 0, 1)[None]
    probs = torch.from_numpy(p)[None].double()  # any float dtype in, float32 out
    out = dense_crf_torch(probs, u8)
    assert out.shape == (1, 3, h, w) and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(1), torch.ones(1, h, w), atol=1e-5, rtol=0)
    as_float = dense_crf_torch(probs, u8.float() / 255)  # float [0, 1] images quantise to the same uint8
    assert torch.equal(out, as_float)
    assert torch.equal(DenseCRFTorch("default")(probs, u8), out)


def test_zero_iterations_and_single_class_are_the_hand_computed_values():
    p = torch.tensor([[[[0.5, 0.0]], [[0.25, 1.0]], [[0.25, 0.0]]]])  # (1, 3, 1, 2)
    img = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)
    out = dense_crf_torch(p, img, iterations=0)
    expected = p.clamp_min(1e-5) / p.clamp_min(1e-5).sum(1, keepdim=True)  # softmax(log p) = p / sum p
    torch.testing.assert_close(out, expected)
    assert torch.equal(dense_crf_torch(p[:, :1], img), torch.ones(1, 1, 1, 2))


def test_float32_inside_an_autocast_region():
    img, p = blob_scene(15)
    probs, rgb = torch.from_numpy(p)[None], torch.from_numpy(img).permute(2, 0, 1)[None]
    plain = dense_crf_torch(probs, rgb, "weakclip_voc")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = dense_crf_torch(probs, rgb, "weakclip_voc")
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)


def test_deterministic():
    img, p = blob_scene(9)
    a, b = run_torch(img, p, "weakclip_retrain"), run_torch(img, p, "weakclip_retrain")
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- the lattice itself
def test_lattice_filter_approximates_a_unit_gaussian_in_feature_space():
    """On a line of pixels with feature x / s, the filter of an impulse is a bump centred on it whose
    standard deviation is s pixels (the kernel exp(-|f_i - f_j|^2 / 2)), and it is linear."""
    x = torch.arange(201, dtype=torch.float32)
    impulse = torch.zeros(201, 1)
    impulse[100] = 1
    for s in (2.0, 4.0, 6.0, 10.0):
        lattice = PermutohedralLattice.build((x / s)[:, None])
        r = lattice.filter(impulse)[:, 0]
        assert float(r.min()) >= 0
        mean = float((r * x).sum() / r.sum())
        std = float(((r * (x - mean) ** 2).sum() / r.sum()).sqrt())
        assert abs(mean - 100) < 0.05 * s and 0.95 < std / s < 1.05, (s, mean, std)
        v = torch.rand(201, 3)
        ones = torch.ones(201, 3)
        torch.testing.assert_close(lattice.filter(2 * v + 1), 2 * lattice.filter(v) + lattice.filter(ones))


def test_groups_never_mix():
    f = torch.rand(50, 5) * 3
    values = torch.rand(50, 4)
    both = PermutohedralLattice.build(torch.cat([f, f]), torch.arange(2).repeat_interleave(50))
    alone = PermutohedralLattice.build(f)
    out = both.filter(torch.cat([values, torch.zeros_like(values)]))
    torch.testing.assert_close(out[:50], alone.filter(values), atol=1e-6, rtol=0)
    assert torch.all(out[50:] == 0)


def test_row_hashing_fallback_equals_integer_codes(monkeypatch):
    img, p = blob_scene(10, k=3, h=20, w=24)
    codes = run_torch(img, p, "psa")
    monkeypatch.setattr(permutohedral, "MAX_CODE", 0.0)  # as if the key ranges overflowed int64
    assert np.allclose(run_torch(img, p, "psa"), codes, atol=1e-6)


# ---------------------------------------------------------------- errors and the backend option
def test_bad_inputs_name_the_argument():
    img = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    probs = torch.full((2, 3, 8, 8), 1 / 3)
    with pytest.raises(ValueError, match="unary_probs must be"):
        dense_crf_torch(probs[0], img)
    with pytest.raises(ValueError, match=r"images must be .*H = 8"):
        dense_crf_torch(probs, img[..., :7])
    with pytest.raises(ValueError, match="floating point"):
        dense_crf_torch(probs.long(), img)
    with pytest.raises(ValueError, match="finite and >= 0"):
        dense_crf_torch(-probs, img)
    with pytest.raises(ValueError, match="uint8 .* or float"):
        dense_crf_torch(probs, img.int())
    with pytest.raises(ValueError, match="no class for images \\[1\\]"):
        dense_crf_torch(probs, img, valid=torch.tensor([[True, False, False], [False] * 3]))
    with pytest.raises(ConfigError, match="weakclp"):
        dense_crf_torch(probs, img, "weakclp")
    with pytest.raises(ConfigError, match="iterations"):
        dense_crf_torch(probs, img, iterations=-1)


def test_backend_names_and_auto():
    assert BACKENDS == ("pydensecrf", "torch", "auto")
    assert resolve_backend("auto", "cpu") == "pydensecrf"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    for bad in (lambda: resolve_backend("gpu"), lambda: DenseCRF(backend="gpu"),
                lambda: dense_crf(np.zeros((4, 4, 3), np.uint8), np.ones((2, 4, 4), np.float32), backend="gpu")):
        expected = "unknown dense CRF backend 'gpu'; valid backends: pydensecrf, torch, auto"
        with pytest.raises(ValueError, match=expected):
            bad()


def test_auto_falls_back_to_torch_without_pydensecrf(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pydensecrf(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError("no pydensecrf here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydensecrf)
    assert resolve_backend("auto", "cpu") == "torch"


def test_refiner_torch_backend_equals_pydensecrf_backend():
    scenes = [blob_scene(s, k=4) for s in (11, 12)]
    images = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i, _ in scenes]).float() / 255
    cams = torch.stack([torch.from_numpy(p[1:]) for _, p in scenes])  # (B, 3, H, W) in [0, 1]
    labels = torch.tensor([[1, 0, 1], [1, 1, 1]])
    ref = DenseCRF("weakclip_voc", workers=0).refine(images, cams, labels)
    out = DenseCRF("weakclip_voc", backend="torch").refine(images, cams, labels)
    assert out.shape == ref.shape == (2, 4, H, W) and out.dtype == torch.float32
    assert torch.all(out[0, 2] == 0)
    assert (out - ref).abs().max() < 1e-3
    seeds = ref.argmax(1)
    seeds[:, :4] = 255
    torch.testing.assert_close(DenseCRF(backend="torch").refine(images, seeds, labels),
                               DenseCRF(workers=0).refine(images, seeds, labels), atol=1e-3, rtol=0)
    assert "backend='torch'" in repr(DenseCRF(backend="torch"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    img, p = blob_scene(13)
    probs, rgb = torch.from_numpy(p)[None], torch.from_numpy(img).permute(2, 0, 1)[None]
    cpu = dense_crf_torch(probs, rgb, "weakclip_voc")
    gpu = dense_crf_torch(probs.cuda(), rgb.cuda(), "weakclip_voc")
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().max() < 1e-4


# ---------------------------------------------------------------- where the pipeline calls the CRF
def test_predict_multiscale_crf_backend_torch_equals_pydensecrf(monkeypatch):
    from torch import nn

    import wsss_kit.crf as crf_package
    from wsss_kit.inference import predict_multiscale

    img, p = blob_scene(14, k=4)
    logits = torch.from_numpy(np.log(p))[None]

    class Fixed(nn.Module):
        def forward(self, x):
            return logits.expand(x.shape[0], -1, -1, -1)

    image = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = predict_multiscale(Fixed(), image, crf="mctformer_seg", crf_workers=0)
    monkeypatch.setattr(crf_package, "dense_crf_batch", None)  # the torch path must not reach pydensecrf
    out = predict_multiscale(Fixed(), image, crf="mctformer_seg", crf_backend="torch")
    assert out.shape == ref.shape == (1, 4, H, W)
    assert (out - ref).abs().max() < 1e-3
    with pytest.raises(ValueError, match="unknown dense CRF backend 'cpu'"):
        predict_multiscale(Fixed(), image, crf="psa", crf_backend="cpu")


def test_run_config_accepts_the_backend_keys_and_refuses_others():
    from wsss_kit.pipeline import plan_run
    from wsss_kit.pipeline.mask_writers import head_infer_settings

    assert head_infer_settings({"crf": "psa"})["crf_backend"] == "pydensecrf"
    assert head_infer_settings({"crf_backend": "auto"})["crf_backend"] == "auto"
    from test_pipeline import tiny_config

    config = tiny_config(["head.infer.crf_backend=auto", "refiner.backend=torch"])
    plan_run(config)  # valid
    with pytest.raises(ConfigError, match=r"head\.infer\.crf_backend must be one of pydensecrf, torch, auto"):
        plan_run(tiny_config(["head.infer.crf_backend=gpu"]))
    with pytest.raises(ConfigError, match="unknown dense CRF backend 'gpu'"):
        plan_run(tiny_config(["refiner.backend=gpu"]))


def test_refiner_with_the_torch_backend_passes_the_conformance_checks():
    from wsss_kit.testing import check_plugin

    check_plugin("refiners/dense_crf", kwargs={"backend": "torch"}, num_classes=3)
