"""What produced an output: resolved config, package and plugin versions, git revision.

:func:`write_provenance` is called beside every output folder so that a number in a table can be
traced back to the exact code and settings that made it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from .atomic import write_text
from .config import dump_config
from .registry import list_plugins
from .version import API_VERSION, __version__

__all__ = ["collect_provenance", "git_revision", "package_versions", "write_provenance"]

_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "segmentation-models-pytorch",
             "kornia", "pydensecrf2", "entrypoints", "numpy")


def git_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: this
    package's source), or ``None`` outside a checkout or without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())}


def package_versions() -> dict[str, str]:
    """Installed versions of wsss-kit's main dependencies (``"missing"`` if not installed)."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """The hardware a run used: CPU model and count, torch's thread count, the CUDA devices."""
    import torch

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda_devices": cuda}


def collect_provenance(cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything that identifies the code and environment of a run."""
    plugins = [
        {"kind": p.kind, "name": p.name, "dist": p.dist, "version": p.version, "status": p.status}
        for p in list_plugins()
    ]
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wsss_kit": __version__,
        "api_version": API_VERSION,
        "git": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": machine(),
        "command": sys.argv,
        "packages": package_versions(),
        "plugins": plugins,
    }


def write_provenance(out_dir: str | os.PathLike[str], cfg: Mapping[str, Any] | None = None) -> Path:
    """Write ``config.resolved.yaml`` (if ``cfg``) and ``provenance.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        write_text(out_dir / "config.resolved.yaml", dump_config(cfg))
    path = out_dir / "provenance.json"
    write_text(path, json.dumps(collect_provenance(cfg), indent=2) + "\n")
    return path
