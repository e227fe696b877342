import sys

import numpy as np
import pytest
import torch

import wsss_kit
from wsss_kit.crf import (
    PARAM_SETS,
    CRFParams,
    CRFPool,
    DenseCRF,
    dense_crf,
    dense_crf_batch,
    get_params,
    seeds_to_probs,
)
from wsss_kit.errors import ConfigError

densecrf = pytest.importorskip("pydensecrf.densecrf")

H = W = 48


def two_region_image(split: int = 24, h: int = H, w: int = W) -> np.ndarray:
    """Blue left part, red right part, with a mild horizontal gradient (structured, not noise)."""
    img = np.zeros((h, w, 3), np.uint8)
    ramp = np.linspace(0, 20, w).astype(np.uint8)
    img[:, :split] = [30, 90, 200]
    img[:, split:] = [200, 60, 40]
    img[..., 1] += ramp[None, :]
    return img


def blurred_probs(center: float, softness: float = 5.0, h: int = H, w: int = W) -> np.ndarray:
    """Two-class probabilities whose boundary is a soft ramp around column ``center``."""
    xx = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
    fg = 1.0 / (1.0 + np.exp(-(xx - center) / softness))
    return np.stack([1.0 - fg, fg]).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ---------------------------------------------------------------- params
def test_named_param_sets():
    assert get_params("psa") == CRFParams(3, 3, 80, 13, 10, 10)
    assert get_params("weakclip_voc").as_tuple() == (3.0, 3.0, 83.0, 5.0, 3.0, 10)
    assert get_params("weakclip_coco").as_tuple()[:5] == (1.0, 3.0, 67.0, 3.0, 4.0)
    assert get_params("weakclip_retrain").as_tuple()[:5] == (1.0, 3.0, 112.0, 2.0, 3.0)
    assert get_params("mctformer_seg").as_tuple()[:5] == (4.0, 3.0, 83.0, 5.0, 3.0)
    assert get_params("weakclip_loss") == get_params("default") == get_params(None)
    assert {"default", "psa", "weakclip_loss", "weakclip_voc", "weakclip_coco", "weakclip_retrain",
            "mctformer_seg"} <= set(PARAM_SETS)


def test_param_dicts_and_overrides():
    p = get_params({"preset": "weakclip_voc", "iterations": 5})
    assert p.bilateral_sxy == 83 and p.iterations == 5
    assert get_params({"gauss_sxy": 2}).bilateral_srgb == 13
    assert get_params("psa", iterations=3).iterations == 3


def test_param_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown CRF parameter set 'weakclip_vco'.*did you mean 'weakclip_voc'"):
        get_params("weakclip_vco")
    with pytest.raises(ConfigError, match=r"available: .*mctformer_seg"):
        get_params("nope")
    with pytest.raises(ConfigError, match=r"unknown CRF parameter 'bilateral_rgb'.*bilateral_srgb"):
        get_params({"bilateral_rgb": 3})
    with pytest.raises(ConfigError, match="iterations"):
        get_params({"iterations": -1})


# ---------------------------------------------------------------- dense_crf
def test_dense_crf_equals_direct_pydensecrf_call():
    img = two_region_image()
    probs = blurred_probs(18.0)
    params = get_params("weakclip_voc")
    out = dense_crf(img, probs, params)

    crf = densecrf.DenseCRF2D(W, H, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.maximum(probs, 1e-5)).reshape(2, -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=83, srgb=5, rgbim=np.ascontiguousarray(img), compat=3)
    expected = np.array(crf.inference(10), dtype=np.float32).reshape(2, H, W)

    assert out.dtype == np.float32 and out.shape == (2, H, W)
    assert np.allclose(out, expected, atol=1e-6)
    assert np.allclose(out.sum(0), 1.0, atol=1e-4)


def test_crf_snaps_blurred_cam_to_colour_edge():
    img = two_region_image(split=24)
    probs = blurred_probs(16.0, softness=6.0)  # the object really starts at column 24
    truth = np.zeros((H, W), bool)
    truth[:, 24:] = True
    before = iou(probs.argmax(0) == 1, truth)
    after = iou(dense_crf(img, probs, "psa").argmax(0) == 1, truth)
    assert before < 0.8
    assert after > 0.97 and after > before


def test_dense_crf_bad_input():
    img = two_region_image()
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(img.astype(np.float32), blurred_probs(20))
    with pytest.raises(ValueError, match="are 40x48 but the image is 48x48"):
        dense_crf(img, blurred_probs(20, h=40))
    with pytest.raises(ValueError, match=">= 0"):
        dense_crf(img, -blurred_probs(20))


def test_missing_pydensecrf_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        dense_crf(two_region_image(), blurred_probs(20))


def test_batch_in_two_workers_equals_serial_and_keeps_order():
    # Different boundaries, class counts and sizes per image, so a reordering would show.
    images, probs = [], []
    for i, c in enumerate([10.0, 20.0, 30.0, 14.0, 36.0]):
        images.append(two_region_image(split=int(c) + 2))
        p = blurred_probs(c)
        if i == 3:
            p = np.stack([p[0] * 0.5, p[0] * 0.5, p[1]])
        probs.append(p)
    images.append(two_region_image(h=32, w=40, split=20))
    probs.append(blurred_probs(18.0, h=32, w=40))
    serial = dense_crf_batch(images, probs, "psa", workers=0)
    parallel = dense_crf_batch(images, probs, "psa", workers=2)
    assert len(parallel) == len(images)
    for s, p, img in zip(serial, parallel, probs):
        assert p.shape == img.shape
        assert np.allclose(s, p, atol=1e-6)
    for i, (img, p) in enumerate(zip(images, probs)):
        assert np.allclose(parallel[i], dense_crf(img, p, "psa"), atol=1e-6)


def test_batch_errors_name_the_image():
    img = two_region_image()
    with pytest.raises(ValueError, match="image 1"):
        dense_crf_batch([img, img], [blurred_probs(20), blurred_probs(20, h=10)], workers=0)
    settings = get_params("psa").as_tuple()
    with CRFPool(2) as pool:
        with pytest.raises(RuntimeError, match="image 1 of 3"):
            pool.map([img, img, img], [blurred_probs(20), "not an array", blurred_probs(20)], settings)


# ---------------------------------------------------------------- worker processes end with their parent
_POOL_SCRIPT = """
import json, sys, threading, time
import numpy as np
from wsss_kit.crf import pool as pool_module
from wsss_kit.crf import CRFPool, get_params

pool_module._PDEATHSIG = {pdeathsig!r}
size, busy = {size!r}, {busy!r}
img = np.zeros((size, size, 3), np.uint8)
img[:, size // 2:] = [200, 60, 40]
fg = np.clip(np.linspace(-1, 2, size, dtype=np.float32), 0, 1)[None, :].repeat(size, 0)
probs = np.stack([1 - fg, fg]).astype(np.float32)
settings = get_params("psa").as_tuple()
pool = CRFPool(2)
pool.map([img] * 2, [probs] * 2, settings)  # one job: the workers are up
if busy:  # the workers are inside pydensecrf when the kill comes
    threading.Thread(target=pool.map, args=([img] * 16, [probs] * 16, settings), daemon=True).start()
    time.sleep(0.3)
import multiprocessing.forkserver as fs
pids = list(pool._executor._processes) + [fs._forkserver._forkserver_pid]
with open({out!r}, "w") as fh:
    json.dump([p for p in pids if p], fh)
time.sleep(120)
"""


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        import psutil
    except ImportError:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL and /proc")
@pytest.mark.parametrize("pdeathsig, busy", [(True, True), (False, False)], ids=["pdeathsig-busy", "watchdog-idle"])
def test_workers_die_when_the_pool_process_is_killed(tmp_path, pdeathsig, busy):
    """SIGKILL of the process that owns a CRF pool leaves no worker (nor fork server) running:
    with the parent-death signal, and with the portable watchdog alone."""
    import json
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "pids.json"
    code = _POOL_SCRIPT.format(pdeathsig=pdeathsig, busy=busy, size=200 if busy else 48, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_text():
            assert proc.poll() is None, "the pool process ended early"
            assert time.monotonic() < deadline, "the pool did not start"
            time.sleep(0.1)
        pids = json.loads(out.read_text())
        assert len(pids) == 3 and all(_process_alive(p) for p in pids)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if _process_alive(p)]
    for p in left:  # do not leak them into the rest of the test session
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes {left} outlived the pool's process"


def test_pool_is_reusable_with_the_guard():
    """The guard does not end healthy workers: one pool serves several batches."""
    img, p = two_region_image(), blurred_probs(20)
    with CRFPool(2) as pool:
        first = pool.map([img] * 3, [p] * 3, get_params("psa"))
        pids = set(pool._executor._processes)
        second = pool.map([img] * 3, [p] * 3, get_params("psa"))
        assert set(pool._executor._processes) == pids
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


# ---------------------------------------------------------------- refiner
def test_refiner_from_cams_shape_sums_and_absent_classes():
    img = torch.from_numpy(two_region_image()).permute(2, 0, 1).float()[None] / 255
    images = img.repeat(2, 1, 1, 1)
    cams = torch.zeros(2, 3, H, W)
    cams[:, 1] = torch.from_numpy(blurred_probs(20.0)[1])
    cams[:, 2, :10, :10] = 0.9  # class 3: absent from image 0's labels, so dropped there
    labels = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    refiner = DenseCRF(params="psa", iterations=5, workers=0)
    out = refiner.refine(images, cams, labels)
    assert out.shape == (2, 4, H, W) and out.dtype == torch.float32
    assert torch.allclose(out.sum(1), torch.ones(2, H, W), atol=1e-4)
    assert torch.all(out[0, 1] == 0) and torch.all(out[0, 3] == 0) and torch.all(out[1, 1] == 0)
    # Image 1 has class 3 (CAM channel 2); it enters the CRF (non-zero) although the CRF may
    # smooth the small square away inside the uniformly coloured region.
    unary = refiner.unaries(cams, labels)
    assert torch.all(unary[0, 3] == 0) and unary[1, 3, :8, :8].min() > 0.8
    assert out[1, 3].min() > 0
    assert (out[0].argmax(0)[:, 30:] == 2).all()


def test_refiner_background_rules():
    cams = torch.tensor([[[[0.2, 0.8]]]])
    labels = torch.ones(1, 1)
    psa = DenseCRF(bg_power=1.0).unaries(cams, labels)
    assert torch.allclose(psa[0, :, 0, 0], torch.tensor([0.8 / 1.0, 0.2 / 1.0]))
    sharp = DenseCRF(bg_power=2.0).unaries(cams, labels)
    assert torch.allclose(sharp[0, :, 0, 1], torch.tensor([0.04 / 0.84, 0.8 / 0.84]))
    const = DenseCRF(bg_threshold=0.5).unaries(cams, labels)
    assert torch.allclose(const[0, :, 0, 0], torch.tensor([0.5 / 0.7, 0.2 / 0.7]))


def test_refiner_from_seed_masks():
    seeds = torch.tensor([[[0, 2], [255, 2]]])
    labels = torch.tensor([[0.0, 1.0, 0.0]])
    probs = seeds_to_probs(seeds, labels, confidence=0.7)
    assert torch.allclose(probs[0, :, 0, 0], torch.tensor([0.7, 0.0, 0.3, 0.0]))
    assert torch.allclose(probs[0, :, 0, 1], torch.tensor([0.3, 0.0, 0.7, 0.0]))
    assert torch.allclose(probs[0, :, 1, 0], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    img = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out = DenseCRF(workers=0).refine(img, seeds, labels)
    assert out.shape == (1, 4, 2, 2)
    assert torch.allclose(out.sum(1), torch.ones(1, 2, 2), atol=1e-4)
    with pytest.raises(ValueError, match="image 0 contains class 3"):
        seeds_to_probs(torch.tensor([[[3]]]), labels)
    with pytest.raises(ValueError, match="outside 0..3"):
        seeds_to_probs(torch.tensor([[[7]]]), labels)


def test_refiner_is_a_registered_plugin():
    refiner = wsss_kit.create("refiners", "dense_crf", params="weakclip_voc", workers=0)
    assert isinstance(refiner, wsss_kit.Refiner) and refiner.params == get_params("weakclip_voc")
    with pytest.raises(ValueError, match="images must be"):
        refiner.refine(torch.rand(1, 4, 8, 8), torch.rand(1, 2, 8, 8), torch.ones(1, 2))
