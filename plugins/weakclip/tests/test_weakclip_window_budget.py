"""Windows per network call from a memory budget (``window_memory_mb``), the probe that measures a
window, the caches of the sliding-window inference, and equal logits however the windows are batched.

Tiny random CLIP (``wsss-tiny-clip``) on CPU; nothing is downloaded.
"""

from __future__ import annotations

import math

import pytest
import torch

import wsss_kit
from wsss_kit.config import build, validate
from wsss_kit.errors import ConfigError
from wsss_weakclip.refiner import WeakCLIPRefiner
from wsss_weakclip.sliding_window import slide_logits, window_boxes
from wsss_weakclip.window_budget import (
    CPU_MARGIN_MB,
    WindowBudget,
    check_window_memory,
    peak_memory_during,
    windows_per_batch,
)

NAMES = ("ball", "box", "kite")
TINY = dict(clip_model="wsss-tiny-clip", clip_weights=None, n_context=2, crf_workers=0, loss_crf_workers=0)
MB = 1024 * 1024


def make(**kwargs):
    torch.manual_seed(0)
    return WeakCLIPRefiner(class_names=NAMES, **{**TINY, **kwargs})


class Counting:
    """``predict`` that records the batch size of every call."""

    def __init__(self, predict):
        self.predict, self.sizes = predict, []

    def __call__(self, x):
        self.sizes.append(int(x.shape[0]))
        return self.predict(x)


# --------------------------------------------------------------------------- budget -> windows per call
@pytest.mark.parametrize("budget, per_window, cap, expected", [
    (1000, 300, None, 3),      # floor(1000 / 300)
    (900, 300, None, 3),       # exactly three fit
    (899, 300, None, 2),
    (100, 300, None, 1),       # one window always runs, even over the budget
    (1000, 300, 2, 2),         # window_batch caps it
    (10 ** 9, 1, 1, 1),
    (1000, 0, None, 1),        # nothing measured: one at a time
])
def test_windows_per_batch_hand_computed(budget, per_window, cap, expected):
    assert windows_per_batch(budget, per_window, cap) == expected


def test_auto_on_cpu_is_one_window_at_a_time_and_never_probed():
    budget = WindowBudget("auto")
    cpu = torch.device("cpu")
    assert budget.budget_bytes(100 * MB, cpu) == 100 * MB + CPU_MARGIN_MB * MB
    x = torch.zeros(1, 3, 8, 8)
    assert budget.one_at_a_time(cpu) and not budget.needs_probe(x) and budget.windows(x) == 1
    budget.per_window_bytes[budget.key(x)] = 30 * MB    # even a small measured window: one at a time, as the official
    assert budget.windows(x) == 1
    measured = WindowBudget(100)                       # a number of megabytes: windows are measured and grouped
    assert not measured.one_at_a_time(cpu) and measured.needs_probe(x)
    measured.per_window_bytes[measured.key(x)] = 30 * MB
    assert not measured.needs_probe(x) and measured.windows(x) == 3
    assert WindowBudget(1e6, max_windows=1).one_at_a_time(cpu)
    fixed = WindowBudget(350, max_windows=2)
    fixed.per_window_bytes[fixed.key(x)] = 100 * MB
    assert fixed.windows(x) == 2                        # floor(350 / 100) = 3, capped at 2
    assert WindowBudget(350).windows(torch.zeros(1, 3, 9, 9)) == 1  # not measured yet


def test_auto_on_cpu_runs_no_profiler():
    refiner = make(scales=(1.0,), base_size=None, flip=False, window=48, stride=32, crf=None).eval()
    with torch.no_grad():
        refiner.probabilities(torch.rand(1, 3, 64, 80))
    assert refiner.window_budget.per_window_bytes == {}


@pytest.mark.parametrize("bad", ["lots", 0, -5, float("nan"), float("inf"), True, None, [512]])
def test_bad_budgets_are_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"window_memory_mb must be 'auto' or a positive number of megabytes"):
        check_window_memory(bad)
    with pytest.raises(ValueError, match="window_memory_mb"):
        WindowBudget(bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", True])
def test_bad_window_batch_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match="window_batch must be an integer >= 1"):
        WindowBudget("auto", bad)


def test_the_refiner_refuses_a_bad_budget_before_building_the_network(monkeypatch):
    import wsss_weakclip.refiner as refiner_module

    def no_network(*args, **kwargs):
        raise AssertionError("the network was built before the budget was checked")

    monkeypatch.setattr(refiner_module, "WeakCLIPNet", no_network)
    with pytest.raises(ValueError, match="window_memory_mb must be 'auto' or a positive number.*got 'big'"):
        WeakCLIPRefiner(class_names=NAMES, window_memory_mb="big", **TINY)
    with pytest.raises(ValueError, match="window_batch must be an integer >= 1.*got 0"):
        WeakCLIPRefiner(class_names=NAMES, window_batch=0, **TINY)


def test_config_keys_are_checked_and_a_typo_is_refused():
    node = {"type": "refiners/weakclip", "class_names": list(NAMES), **TINY, "window_memory_mb": 300}
    validate(node, "refiner")
    with pytest.raises(ConfigError, match=r"refiner\.window_memory: .*did you mean 'window_memory_mb'"):
        validate({**{k: v for k, v in node.items() if k != "window_memory_mb"}, "window_memory": 300}, "refiner")
    with pytest.raises(ConfigError, match=r"refiner \(refiners/weakclip\): window_memory_mb must be"):
        build({**node, "window_memory_mb": -1}, "refiner")
    refiner = wsss_kit.create("refiners", "weakclip", class_names=list(NAMES), **TINY, window_memory_mb=300,
                              window_batch=4)
    assert refiner.window_budget.memory_mb == 300.0 and refiner.window_budget.max_windows == 4


# --------------------------------------------------------------------------- the probe
def test_the_probe_measures_the_peak_of_what_a_call_allocates():
    def fn(x):
        big = x.new_zeros(4 * MB // 4)  # 4 MiB of float32, freed before the call returns
        return x + big[:1]

    out, peak = peak_memory_during(fn, torch.zeros(1, 4))
    assert out.shape == (1, 4)
    assert 4 * MB <= peak < 5 * MB


def test_the_probe_is_the_first_window_and_later_calls_follow_the_budget():
    conv = torch.nn.Conv2d(3, 4, 1)
    images = torch.rand(1, 3, 70, 90)
    n_windows = len(window_boxes(70, 90, 32, 21))  # 3 × 4
    per_window = None
    with torch.no_grad():
        budget = WindowBudget(memory_mb=1e6)  # a huge budget: everything after the probe in one call
        counted = Counting(conv)
        slide_logits(counted, images, window=32, stride=21, batch_size=budget)
        assert counted.sizes == [1, n_windows - 1]
        per_window = budget.per_window_bytes[budget.key(images[:1, :, :32, :32])]
        assert per_window > 0
        # a budget of 3.5 windows: known cost, so no probe; the first window still alone, then 3 per call
        budget.memory_mb = 3.5 * per_window / MB
        counted = Counting(conv)
        slide_logits(counted, images, window=32, stride=21, batch_size=budget)
        assert counted.sizes == [1, 3, 3, 3, 2]


def test_a_new_window_size_is_measured_again():
    conv = torch.nn.Conv2d(3, 4, 1)
    budget = WindowBudget(memory_mb=1e6)
    with torch.no_grad():
        slide_logits(conv, torch.rand(1, 3, 70, 90), window=32, stride=21, batch_size=budget)
        counted = Counting(conv)
        slide_logits(counted, torch.rand(1, 3, 70, 90), window=48, stride=32, batch_size=budget)
    assert counted.sizes[0] == 1  # probed: 48 x 48 windows were not measured
    assert {k[:2] for k in budget.per_window_bytes} == {(32, 32), (48, 48)}
    budget.clear()
    assert not budget.per_window_bytes


# --------------------------------------------------------------------------- equal outputs
def test_batched_windows_give_the_one_window_logits():
    refiner = make().eval()

    def predict(x):
        return refiner.net(x)["logits"]

    images = torch.rand(2, 3, 80, 112)
    with torch.no_grad():
        one = slide_logits(predict, images, window=48, stride=32, batch_size=1)
        for batch in (3, 100, WindowBudget(memory_mb=1e6), WindowBudget("auto"), WindowBudget(1e6, max_windows=2)):
            torch.testing.assert_close(slide_logits(predict, images, window=48, stride=32, batch_size=batch), one,
                                       rtol=1e-5, atol=1e-5)


def test_the_refiner_keeps_what_it_measured_across_images():
    refiner = make(scales=(1.0, 0.75), base_size=None, flip=True, window=48, stride=32, crf=None,
                   window_memory_mb=1000).eval()  # a number: measured (``auto`` on a CPU measures nothing)
    probs = refiner.refine(torch.rand(1, 3, 64, 80), None, None)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 64, 80))
    measured = dict(refiner.window_budget.per_window_bytes)
    assert {k[:2] for k in measured} == {(48, 48)}
    reference = make(scales=(1.0, 0.75), base_size=None, flip=True, window=48, stride=32, crf=None,
                     window_batch=1).eval()
    images = torch.rand(1, 3, 64, 80)
    torch.testing.assert_close(refiner.refine(images, None, None), reference.refine(images, None, None),
                               rtol=1e-5, atol=1e-6)
    assert refiner.window_budget.per_window_bytes == measured


# --------------------------------------------------------------------------- position-table cache
def test_position_tables_are_cached_per_grid_and_recomputed_when_clip_changes():
    refiner = make()  # official preset: pos_base_size and the doubled class embedding, the encoder's own forward
    encoder = refiner.net.encoder
    assert encoder.custom_forward
    with torch.no_grad():
        a = encoder._position_embedding((3, 4))
        assert a.shape[0] == 1 + 12 and encoder._position_embedding((3, 4)) is a
        b = encoder._position_embedding((5, 5))
        assert b.shape[0] == 1 + 25 and len(encoder._pos_cache) == 2
        torch.testing.assert_close(a, encoder._resize_position_embedding((3, 4)))
        encoder.clip.visual.positional_embedding.mul_(2.0)  # in place: a new version of the table
        c = encoder._position_embedding((3, 4))
    assert c is not a and not math.isclose(float(c.abs().sum()), float(a.abs().sum()))
    torch.testing.assert_close(c, encoder._resize_position_embedding((3, 4)))
    encoder.clear_position_cache()
    assert not encoder._pos_cache


def test_the_memory_probe_prints_nothing():
    """The profiler behind the probe logs its start/stop (and on a CPU-only build an ERROR line about
    CUDA) to stderr unless silenced: a user running inference must not see that."""
    import os
    import subprocess
    import sys

    code = ("import torch\nfrom wsss_weakclip.window_budget import peak_memory_during\n"
            "out, peak = peak_memory_during(lambda x: (x * 2).sum(), torch.ones(1000))\nprint(peak)\n")
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) >= 4000  # the 1000 float32 of x * 2 were seen
    assert "profiler_start" not in proc.stderr and "gpuGetDeviceCount" not in proc.stderr, proc.stderr[-2000:]
