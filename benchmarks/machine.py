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
