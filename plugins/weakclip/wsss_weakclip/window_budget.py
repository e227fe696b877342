"""How many sliding windows go through the network at once: a memory budget instead of a fixed count.

A window's activations (ViT tokens, the pyramid, the decoder at 1/4 resolution) grow with the
number of windows in a call, the weights do not. :class:`WindowBudget` measures what one window
costs (the first window of each window size runs alone under the PyTorch profiler's memory
events, so the probe is a real prediction, not extra work), caches it per window shape and device,
and from then on gives ``floor(budget / per_window)`` windows per call (at least 1, at most
``max_windows``).

The budget, ``window_memory_mb``:

* a number: megabytes of activations one call may use (``per_window · n <= budget``);
* ``"auto"``: on CUDA the device's free memory (``torch.cuda.mem_get_info`` plus what the caching
  allocator holds unused) times :data:`CUDA_FREE_FRACTION`; on CPU one window per call, not
  measured, so the peak is that of one window at a time (the official code's): a single-threaded
  CPU gains little from larger batches, every extra window costs its activations again (8 ViT-B/16
  windows of 512 px: +1.4 GB), and the profiler that measures a window would itself raise the
  process's peak (by 35-60 MB around a 512-px ViT-B/16 window: kineto's buffers and records).
  :data:`CPU_MARGIN_MB` is what :meth:`WindowBudget.budget_bytes` still allows beyond one window
  for callers that measured one themselves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor

__all__ = ["CPU_MARGIN_MB", "CUDA_FREE_FRACTION", "WindowBudget", "check_window_memory", "peak_memory_during",
           "windows_per_batch"]

CPU_MARGIN_MB = 64.0
"""``auto`` on CPU: megabytes allowed above one window's activations. Small enough that a ViT-B/16
window of 512 px (~200 MB of activations) runs alone, as in the official code, whose peak memory is
the target (with 256 MB two such windows went together: +85 MB peak, no faster at one thread)."""
CUDA_FREE_FRACTION = 0.8
"""``auto`` on CUDA: the share of the free device memory one call may use."""

_MB = 1024.0 * 1024.0


def check_window_memory(value: object, key: str = "window_memory_mb") -> float | str:
    """``"auto"`` or a positive number of megabytes (as a float); else a ``ValueError`` naming ``key``."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{key} must be 'auto' or a positive number of megabytes, got {value!r}")
    return float(value)


def check_max_windows(value: object, key: str = "window_batch") -> int | None:
    """``None`` (no cap) or an integer >= 1; else a ``ValueError`` naming ``key``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1 (most windows per network call) or null (as many as "
                         f"window_memory_mb allows), got {value!r}")
    return value


def windows_per_batch(budget_bytes: float, per_window_bytes: float, max_windows: int | None = None) -> int:
    """``floor(budget_bytes / per_window_bytes)``, at least 1 (one window always runs), at most ``max_windows``.

    >>> windows_per_batch(1000, 300), windows_per_batch(100, 300), windows_per_batch(1000, 300, 2)
    (3, 1, 2)
    """
    if per_window_bytes <= 0:  # nothing measured: the safe choice
        count = 1
    else:
        count = max(1, int(budget_bytes // per_window_bytes))
    return count if max_windows is None else max(1, min(count, int(max_windows)))


def peak_memory_during(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, int]:
    """``fn(x)`` and the peak of the bytes it allocated on ``x``'s device above what was allocated before.

    Read from the PyTorch profiler's memory events (every allocation and free, in order), which works
    on CPU, where PyTorch keeps no allocator statistics, and on CUDA without resetting the device's
    peak statistics (another measurement may be reading them). 0 when no event was seen or a
    profiler of the caller's is already running (then ``fn`` runs without one).
    """
    from torch.profiler import ProfilerActivity, profile

    # kineto starts on the first profile and then logs its start/stop (and, without CUDA, an
    # "ERROR ... gpuGetDeviceCount failed" line) to stderr: noise to a user running inference, who
    # did not ask for a profiler. Level 6 silences it; a level the user set is kept.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    try:
        with profile(activities=activities, profile_memory=True) as prof:
            out = fn(x)
    except RuntimeError as exc:  # a profiler already running (the caller's) cannot be nested
        if "profiler" not in str(exc).lower():
            raise
        return fn(x), 0
    wanted = x.device.type
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).split(".")[-1].lower() == wanted]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        current += int(event.nbytes())
        peak = max(peak, current)
    return out, peak


class WindowBudget:
    """Windows per network call from a memory budget (see the module docstring).

    Args:
        memory_mb: ``"auto"`` or megabytes of activations one call may use (``window_memory_mb``).
        max_windows: at most this many windows per call (``window_batch``); ``None``: no cap.

    :meth:`predict` runs a batch of equal-size windows ``(N, 3, h, w)`` through ``predict`` and is
    what :func:`~wsss_weakclip.sliding_window.slide_logits` calls; :meth:`windows` says how many it
    may give at once; ``per_window_bytes`` holds the measured cost per ``(h, w, device, dtype)``.
    """

    def __init__(self, memory_mb: float | str = "auto", max_windows: int | None = None) -> None:
        self.memory_mb = check_window_memory(memory_mb)
        self.max_windows = check_max_windows(max_windows)
        self.per_window_bytes: dict[tuple[int, int, str, torch.dtype], int] = {}

    @staticmethod
    def key(x: Tensor) -> tuple[int, int, str, torch.dtype]:
        """The cache key of a window batch ``(N, 3, h, w)``: its window size, device and dtype."""
        return int(x.shape[-2]), int(x.shape[-1]), str(x.device), x.dtype

    def knows(self, x: Tensor) -> bool:
        """Whether the cost of windows shaped like ``x`` has been measured."""
        return self.key(x) in self.per_window_bytes

    def one_at_a_time(self, device: torch.device) -> bool:
        """Whether every call gets one window whatever it costs: ``"auto"`` on a CPU, or ``max_windows=1``."""
        return self.max_windows == 1 or (self.memory_mb == "auto" and device.type != "cuda")

    def needs_probe(self, x: Tensor) -> bool:
        """Whether the next window shaped like ``x`` should run under the memory probe."""
        return not self.knows(x) and not self.one_at_a_time(x.device)

    def budget_bytes(self, per_window: int, device: torch.device) -> float:
        """The budget in bytes for windows of ``per_window`` bytes on ``device``."""
        if self.memory_mb != "auto":
            return float(self.memory_mb) * _MB
        if device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(device)
            unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return CUDA_FREE_FRACTION * float(free + unused)
        return per_window + CPU_MARGIN_MB * _MB

    def windows(self, x: Tensor) -> int:
        """Windows shaped like ``x`` per call (1 until their cost is measured)."""
        per_window = self.per_window_bytes.get(self.key(x))
        if per_window is None or self.one_at_a_time(x.device):
            return 1
        return windows_per_batch(self.budget_bytes(per_window, x.device), per_window, self.max_windows)

    def probe(self, predict: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """``predict(x)`` for one window ``(1, 3, h, w)``, recording its cost for its window shape."""
        out, peak = peak_memory_during(predict, x)
        self.per_window_bytes[self.key(x)] = peak
        return out

    def clear(self) -> None:
        """Forget the measured costs (e.g. after the network changed)."""
        self.per_window_bytes.clear()

    def __repr__(self) -> str:
        return f"WindowBudget(memory_mb={self.memory_mb!r}, max_windows={self.max_windows})"
