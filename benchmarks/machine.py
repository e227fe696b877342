"""The machine a benchmark ran on, recorded beside its numbers (CPU figures on a shared machine are
only comparable with the load average at the time)."""

from __future__ import annotations

import os
import platform
import resource
from typing import Any

import torch


def machine_info(**extra: Any) -> dict[str, Any]:
    """CPU count, torch threads, platform, CUDA device (if any), load average, torch version and
    this process's peak RSS so far; ``extra`` entries are added (or replace these)."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    return {**info, **extra}


def rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Set this process's peak RSS (``VmHWM``) back to its current RSS (Linux ``clear_refs`` 5), so a
    peak read afterwards is that of what runs next, not of imports and model building; ``False``
    where the kernel does not allow it (the peak then counts from the process start)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: ``VmHWM`` (which :func:`reset_peak_rss` resets), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
