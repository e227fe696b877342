"""Timing and peak memory of variants run side by side: the one loop every speed measure uses.

Variants (callables doing one unit of work: an image, a training step, a pass over the masks) run
in interleaved rounds, one call of each per round with the order rotated, so that a machine whose
load changes slows them alike; the first ``warmup`` rounds are not counted. Per variant: the
seconds of every counted call (median, min, max), the median of the per-round ratios to a
baseline, and the peak memory during its calls:

* CPU: the resident set size (RSS) sampled by a thread every :data:`SAMPLE_S` seconds, and the
  process's high-water mark (``ru_maxrss``) when a call raised it (then that call's exact peak);
  ``peak_rss_mb`` is the largest RSS during the variant's calls (what the other variants hold
  included), ``peak_rss_above_start_mb`` the largest rise above the RSS at the start of a call
  (the call's own working memory).
* CUDA: ``torch.cuda.max_memory_allocated`` during the variant's calls (reset before each).
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from benchmarks.machine import rss_mb

SAMPLE_S = 0.005
"""Seconds between two RSS samples."""


def max_rss_mb() -> float:
    """This process's peak RSS so far (``ru_maxrss``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples this process's RSS from a daemon thread while open; :meth:`window` gives the peak
    of a stretch of time (``with sampler.window() as peak: ...; peak.value``)."""

    def __init__(self, interval: float = SAMPLE_S) -> None:
        self.interval = interval
        self._peak = 0.0
        self._window = 0  # which window a sample belongs to; :meth:`reset` starts the next
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            window = self._window
            value = rss_mb()
            with self._lock:
                # A sample read before a reset belongs to the previous call: storing it would give
                # the next call the previous call's peak (seen as a 256 MB "rise" in a call that
                # allocates nothing).
                if window == self._window:
                    self._peak = max(self._peak, value)

    def reset(self) -> float:
        """Start a new window; returns the RSS now."""
        with self._lock:
            self._window += 1
            now = rss_mb()
            self._peak = now
        return now

    def peak(self) -> float:
        """The largest RSS sampled since :meth:`reset` (the current RSS included)."""
        return max(self._peak, rss_mb())


@dataclass
class Timed:
    """What one point of a measure returns: per variant the seconds of each counted call and its
    peak memory, how many units (images, masks, steps) one call processes (per variant; 1 when
    absent), what the ``official`` side is, and the rest (agreement, configuration).

    ``summaries``: per variant ``{median_s, min_s, max_s, runs}`` already reduced, for a script that
    times its variants itself and returns only those (then ``seconds`` may lack the variant)."""

    seconds: dict[str, list[float]]
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    units_per_call: dict[str, int] = field(default_factory=dict)
    official: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleave(variants: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1,
               device: torch.device | str = "cpu", units_per_call: Mapping[str, int] | None = None) -> Timed:
    """Run every variant once per round for ``warmup + rounds`` rounds (order rotated each round)
    and return the counted seconds per call and each variant's peak memory (module docstring).

    Raises:
        ValueError: no variants, ``rounds < 1`` or ``warmup < 0``.
    """
    if not variants:
        raise ValueError("interleave: no variants to time")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"interleave: rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    dev = torch.device(device)
    names = list(variants)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    memory: dict[str, dict[str, float]] = {n: {"peak_rss_mb": 0.0, "peak_rss_above_start_mb": 0.0} for n in names}
    with RssSampler() as sampler:
        for r in range(warmup + rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                _sync(dev)
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                high_before = max_rss_mb()
                start_rss = sampler.reset()
                start = time.perf_counter()
                variants[name]()
                _sync(dev)
                elapsed = time.perf_counter() - start
                peak = sampler.peak()
                high_after = max_rss_mb()
                if high_after > high_before:  # this call set a new high-water mark: its exact peak
                    peak = max(peak, high_after)
                mem = memory[name]
                mem["peak_rss_mb"] = max(mem["peak_rss_mb"], round(peak, 1))
                mem["peak_rss_above_start_mb"] = max(mem["peak_rss_above_start_mb"], round(peak - start_rss, 1))
                if dev.type == "cuda":
                    cuda_peak = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
                    mem["peak_cuda_mb"] = max(mem.get("peak_cuda_mb", 0.0), cuda_peak)
                if r >= warmup:
                    seconds[name].append(elapsed)
    return Timed(seconds=seconds, memory=memory, units_per_call=dict(units_per_call or {}))


def summarise(timed: Timed, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Per variant: ``median_s``, ``min_s``, ``max_s``, ``runs`` (seconds per call), ``per_unit_s``
    (median / units per call), the memory fields, and ``ratio_to_<baseline>`` (the median of the
    per-round ratios variant / baseline per unit, or the ratio of the medians for reduced
    summaries: > 1 means slower than the baseline)."""
    out: dict[str, dict[str, Any]] = {}
    for name in list(timed.seconds) + [n for n in timed.summaries if n not in timed.seconds]:
        secs = timed.seconds.get(name, [])
        if secs:
            median = statistics.median(secs)
            row: dict[str, Any] = {"median_s": round(median, 5), "min_s": round(min(secs), 5),
                                   "max_s": round(max(secs), 5), "runs": len(secs)}
        elif name in timed.summaries:
            row = dict(timed.summaries[name])
            median = float(row["median_s"])
        else:
            continue
        units = timed.units_per_call.get(name, 1)
        row.update(units_per_call=units, per_unit_s=round(median / units, 6), **timed.memory.get(name, {}))
        base = timed.seconds.get(baseline or "", [])
        if baseline and name != baseline and secs and base:  # per unit, round by round
            scale = timed.units_per_call.get(baseline, 1) / units
            row[f"ratio_to_{baseline}"] = round(statistics.median(a / b * scale for a, b in zip(secs, base)), 3)
        out[name] = row
    for name, row in out.items():  # reduced summaries: the ratio of the medians per unit
        if baseline in out and name != baseline and f"ratio_to_{baseline}" not in row:
            row[f"ratio_to_{baseline}"] = round(row["per_unit_s"] / out[baseline]["per_unit_s"], 3)
    return out
