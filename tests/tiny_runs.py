"""Tiny `wsss run`s in subprocesses and the file-by-file comparison of two run directories, for
tests/test_determinism.py and tests/test_soak.py.

    tiny_command(out, extra)        argv of `python -m wsss_kit.cli.main run` on the demo config at toy size
    run_to_completion(out, threads) that command in a subprocess with `threads` torch/OpenMP threads
    differences(a, b)               what differs between two run directories (empty: bit-equal results)
    damaged(run_dir)                files that do not load in full, and leftover temporary files
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "wsss_kit" / "configs" / "demo.yaml"

TINY = (
    "data.train.num_images=12", "data.train.image_size=64",
    "data.eval.num_images=6", "data.eval.image_size=64",
    "cam.augment.crop_size=64", "cam.train.steps=4", "cam.train.batch_size=4",
    "cam.train.checkpoint_every=2", "cam.infer.scales=[1.0]",
    "head.augment.crop_size=64", "head.train.steps=4", "head.train.batch_size=4",
    "head.train.checkpoint_every=2", "refiner.workers=0", "eval.pictures=2",
)
"""The demo at toy size; both training stages save a checkpoint half-way, so that a resume from a
mid-training checkpoint is part of what the soak exercises."""

TIME_KEYS = frozenset({"finished", "started", "wall_seconds", "seconds"})
"""Keys of results.json / manifest.json that hold clock readings, not results."""


def run_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The environment of a tiny run: offline, unbuffered, ``threads`` torch/OpenMP threads."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env.update(extra)
    return env


def tiny_command(out: Path, extra: Sequence[str] = (), stages: str | None = None) -> list[str]:
    """``python -m wsss_kit.cli.main run demo.yaml --out OUT --set ...`` at toy size (``extra``: more
    ``--set`` items; ``stages``: a ``--stages`` list)."""
    cmd = [sys.executable, "-m", "wsss_kit.cli.main", "run", str(DEMO_CONFIG), "--out", str(out)]
    for item in (*TINY, *extra):
        cmd += ["--set", item]
    return cmd + (["--stages", stages] if stages else [])


STAGE_LINE = re.compile(r"\[wsss\] (\w+): running")
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used by process ``pid`` and its reaped children (``/proc/PID/stat``); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(f) for f in fields[11:15]) / _TICK  # utime, stime, cutime, cstime


class RunProcess:
    """`wsss run` in a subprocess of its own session, its "[wsss] STAGE: running" lines followed by a
    thread. ``stage`` is the stage running now (None: start-up), ``stage_cpu`` the process's CPU
    seconds when it started: CPU time measures a stage's progress whatever the machine's load."""

    def __init__(self, cmd: Sequence[str], threads: int = 1, umask: int | None = None):
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=run_env(threads), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                     **({} if umask is None else {"umask": umask}))
        self.started = time.monotonic()
        self.stage: str | None = None
        self.stage_cpu = 0.0
        self.cpu_per_stage: dict[str, float] = {}  # finished stages (and "startup"): CPU seconds
        self.last_cpu = 0.0
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def cpu(self) -> float:
        now = process_cpu_seconds(self.proc.pid)
        if now is not None:
            self.last_cpu = now
        return self.last_cpu

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.tail = (self.tail + [line])[-60:]
            for match in STAGE_LINE.finditer(line):
                cpu = self.cpu()
                self.cpu_per_stage[self.stage or "startup"] = cpu - self.stage_cpu
                self.stage, self.stage_cpu = match.group(1), cpu

    def wait(self, timeout: float = 600) -> int:
        """Wait for the end; records the last stage's CPU seconds."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise TimeoutError(f"wsss run took more than {timeout} s:\n{''.join(self.tail)}")
            self.cpu()
            time.sleep(0.05)
        self._reader.join(timeout=10)
        self.cpu_per_stage[self.stage or "startup"] = self.last_cpu - self.stage_cpu
        return self.proc.returncode


def run_to_completion(out: Path, threads: int = 1, extra: Sequence[str] = (), stages: str | None = None,
                      timeout: float = 600) -> Path:
    """Run :func:`tiny_command` in a subprocess with ``threads`` threads; fails the test if it fails.
    Writes the CPU seconds of each stage beside the run folder (:func:`stage_cpu_seconds`)."""
    run = RunProcess(tiny_command(out, extra, stages), threads)
    rc = run.wait(timeout)
    assert rc == 0, f"wsss run failed ({rc}):\n{''.join(run.tail)}"
    out.with_name(out.name + ".stage_cpu.json").write_text(json.dumps(run.cpu_per_stage))
    return out


def stage_cpu_seconds(run_dir: Path) -> dict[str, float]:
    """CPU seconds of each stage (and of "startup") of a run made by :func:`run_to_completion`."""
    return json.loads(run_dir.with_name(run_dir.name + ".stage_cpu.json").read_text())


# --------------------------------------------------------------------------- comparison
def _without_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value


def _tensor_differences(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{where}: tensor against {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{where}: {a.dtype}{tuple(a.shape)} against {b.dtype}{tuple(b.shape)}"]
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "n/a"
            return [f"{where}: values differ (max abs difference {diff})"]
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(set(a) ^ set(b))} in one only"]
        return [d for k in a for d in _tensor_differences(a[k], b[k], f"{where}[{k}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} and {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _tensor_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} against {b!r}"]


def _log_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in csv.DictReader(fh)]


def compared_files(run_dir: Path) -> list[Path]:
    """Every result file of a run, relative to it (what a run writes, less pictures and provenance)."""
    keep = {".npz", ".png", ".pt", ".json", ".csv"}
    skip = {"provenance.json", "pictures"}
    return sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")
                  if p.is_file() and p.suffix in keep and not p.name.startswith(".")
                  and not skip & set(p.relative_to(run_dir).parts))


def differences(a: Path, b: Path) -> list[str]:
    """What differs between run directories ``a`` and ``b``: the list of result files, then each
    file's content: every array of every CAM ``.npz`` (dtype, shape, bits), the pixels and mode of
    every mask/prediction PNG, every tensor of every checkpoint, the training logs (less the clock
    column) and results.json / manifest.json (less the clock readings)."""
    files_a, files_b = compared_files(a), compared_files(b)
    if files_a != files_b:
        return [f"files in one run only: {sorted(set(map(str, files_a)) ^ set(map(str, files_b)))}"]
    out: list[str] = []
    for rel in files_a:
        fa, fb = a / rel, b / rel
        if rel.suffix == ".npz":
            with np.load(fa) as za, np.load(fb) as zb:
                if za.files != zb.files:
                    out.append(f"{rel}: arrays {za.files} against {zb.files}")
                    continue
                for key in za.files:
                    x, y = za[key], zb[key]
                    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                        out.append(f"{rel}[{key}] differs")
        elif rel.suffix == ".png":
            with Image.open(fa) as ia, Image.open(fb) as ib:
                if ia.mode != ib.mode or not np.array_equal(np.asarray(ia), np.asarray(ib)):
                    out.append(f"{rel}: pixels differ")
        elif rel.suffix == ".pt":
            out += _tensor_differences(torch.load(fa, weights_only=True), torch.load(fb, weights_only=True),
                                       str(rel))
        elif rel.suffix == ".csv":
            if _log_rows(fa) != _log_rows(fb):
                out.append(f"{rel}: rows differ")
        elif rel.suffix == ".json":
            ja, jb = (_without_clock(json.loads(f.read_text())) for f in (fa, fb))
            if ja != jb:
                out.append(f"{rel} differs: {_first_json_difference(ja, jb)}")
    return out


def _first_json_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_json_difference(a.get(k), b.get(k), f"{where}.{k}")
    return f"{where or '.'}: {json.dumps(a)[:120]} against {json.dumps(b)[:120]}"


def damaged(run_dir: Path) -> list[str]:
    """Files of ``run_dir`` that do not load (every .npz, .png, .pt and .json is opened in full), and
    hidden temporary files (``.*.tmp``) that interrupted writes left behind."""
    bad: list[str] = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir)
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            bad.append(f"{rel}: leftover temporary file")
            continue
        try:
            if path.suffix == ".npz":
                with np.load(path) as z:
                    for key in z.files:
                        z[key]
            elif path.suffix == ".png":
                with Image.open(path) as im:
                    im.load()
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, KeyError) as exc:
            bad.append(f"{rel}: {type(exc).__name__}: {exc}")
    return bad
