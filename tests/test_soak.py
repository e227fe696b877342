"""Interruption soak: `wsss run` killed with SIGKILL at random points and resumed until it completes
gives the files of a run that was never interrupted, bit for bit, and leaves no damaged file.

Each attempt starts `python -m wsss_kit.cli.main run` on a tiny config in a subprocess of its own
session, with umask 027 and 1 thread, follows its "[wsss] STAGE: running" lines, and kills the
`wsss run` process at a random point of a stage (measured in the CPU seconds the process has used
since the stage began, against what the stage took uninterrupted; see `soak_episode`). The next
attempt resumes in the same folder. Once the run completes:

- every result file equals the uninterrupted run's (`tiny_runs.differences`: CAM arrays, seed /
  pseudo-mask / prediction pixels, every checkpoint tensor, the training logs, results.json and
  manifest.json less clock readings);
- every file loads in full (`tiny_runs.damaged`: .npz, .png, .pt with weights_only=True, .json),
  and no hidden temporary file (`.*.tmp`) of an interrupted write is left;
- every file has mode 0o640 and every folder 0o750 (what umask 027 gives);
- no process of a killed run's session (e.g. a dense-CRF pool worker) outlives it by 2 s.

The default run kills 4 times (`test_short_soak`: CAM training, CAM export, pseudo-mask writing,
head training). `python -m pytest -m slow tests/test_soak.py -s` runs the long soak: at least 100
kills (``WSSS_SOAK_KILLS``), 1-3 in every stage of every episode, over two configs (dense CRF with a
pool of worker processes, and PSA's trainable random-walk refiner); it prints the counts and, with
``WSSS_SOAK_REPORT=FILE``, writes them to FILE. ``WSSS_SOAK_SEED`` changes the random points.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pytest
from tiny_runs import RunProcess, damaged, differences, run_to_completion, stage_cpu_seconds, tiny_command

UMASK = 0o027

PSA_RW = (
    "refiner={type: refiners/psa_rw, stem_width: 4, widths: [[4, 4], [4, 8], [8, 8], [8, 16]], "
    "depths: [1, 1, 1, 1], bottleneck_widths: [8, 16], dropouts: [0.0, 0.0], embed_widths: [4, 4, 8], "
    "embed_dim: 8, freeze_bn: false, train_cover_border: true}",
    "refiner_train={steps: 4, batch_size: 4, lr: 0.01, optimizer: sgd, checkpoint_every: 2}",
    "refiner_augment={crop_size: 64}",
    "refiner_targets={kind: cams, workers: 0}",
)
"""A tiny trainable refiner (as in tests/test_distributed.py): ``train_refiner`` makes PSA's
confident-region targets from the CAMs and trains a quarter-width AffinityNet, resumably."""

CRF_POOL = ("refiner.workers=2",)
"""The demo's dense CRF with a pool of 2 worker processes (the tiny default uses none)."""

STAGES = {
    "dense_crf_pool": ("train_cam", "cams", "seeds", "pseudo_masks", "train_head", "eval"),
    "psa_rw": ("train_cam", "cams", "seeds", "train_refiner", "pseudo_masks", "train_head", "eval"),
}
"""The stages that do work in each soak config (dense CRF has nothing to train)."""


@dataclass
class SoakCounts:
    kills: Counter = field(default_factory=Counter)  # stage running at the kill -> count
    attempts: int = 0
    completed_runs: int = 0
    runs_equal: int = 0
    damaged: list = field(default_factory=list)
    differences: list = field(default_factory=list)
    leftover_temps: list = field(default_factory=list)
    wrong_modes: list = field(default_factory=list)
    survivors: int = 0  # processes of a killed run's session still alive after the kill
    failures: list = field(default_factory=list)  # resumes that exited with an error

    def as_dict(self) -> dict:
        return {"kills": sum(self.kills.values()), "kills_per_stage": dict(sorted(self.kills.items())),
                "attempts": self.attempts, "completed_runs": self.completed_runs, "runs_equal": self.runs_equal,
                "damaged_files": len(self.damaged), "leftover_temp_files": len(self.leftover_temps),
                "files_with_wrong_mode": len(self.wrong_modes), "surviving_processes": self.survivors,
                "failed_resumes": len(self.failures)}


def _session_alive(sid: int) -> list[int]:
    """Processes (zombies aside) in session ``sid``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            alive.append(int(entry.name))
    return alive


class Attempt(RunProcess):
    """One `wsss run` (umask 027, 1 thread) that the soak may kill."""

    def __init__(self, cmd: Sequence[str]):
        super().__init__(cmd, threads=1, umask=UMASK)

    def kill(self) -> tuple[str, int]:
        """SIGKILL the `wsss run` process only (as an out-of-memory killer would); returns the stage
        it was in and how many processes of its session were still alive 2 s later (those are then
        killed too, so that a leak cannot disturb the next attempt)."""
        stage = self.stage or "startup"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 2.0
        while (alive := _session_alive(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=5)
        return stage, len(alive)


def soak_episode(out: Path, reference: Path, rng: random.Random, plan: Mapping[str, int], counts: SoakCounts,
                 extra: Sequence[str] = (), window: float = 1.0, timeout: float = 900) -> None:
    """Run `wsss run` into ``out``, killing it with SIGKILL ``plan[stage]`` times in each stage (and
    ``plan["startup"]`` times before the first stage), resuming after each kill until it completes;
    then check the finished run against ``reference`` (an uninterrupted run of the same config).
    ``counts`` collects what happened.

    A stage is killed when the process has used a uniform random share (up to ``window``) of the
    CPU seconds that the stage took in the uninterrupted run since its "running" line: CPU time,
    unlike wall time, does not stretch with the machine's load. A stage that ends before its kill
    loses that kill (a resumed stage often has little left to do), so every kill lands inside the
    stage it is counted for, its last writes included (a stage ends when the next one starts)."""
    cpu_seconds = stage_cpu_seconds(reference)
    cmd = tiny_command(out, extra)
    left = Counter({stage: n for stage, n in plan.items() if n > 0})

    def kill_point(stage: str) -> float:
        return rng.uniform(0.0, window * max(cpu_seconds.get(stage, 1.0), 0.05))

    while True:
        attempt = Attempt(cmd)
        counts.attempts += 1
        target, kill_at = None, None  # the stage to kill in and the CPU seconds into it
        if left["startup"]:
            target, kill_at = "startup", kill_point("startup")
        while +left and attempt.proc.poll() is None:
            stage = attempt.stage or "startup"
            if kill_at is not None and stage != target:  # the targeted stage ended first
                target, kill_at = None, None
            if kill_at is None and left[stage]:
                target, kill_at = stage, kill_point(stage)
            if kill_at is not None and attempt.cpu() - attempt.stage_cpu >= kill_at:
                stage, alive = attempt.kill()
                left[stage] -= 1
                counts.kills[stage] += 1
                counts.survivors += alive
                break
            time.sleep(0.01)
        else:
            rc = attempt.wait(timeout)
            if rc != 0:
                counts.failures.append(f"{out}: attempt {counts.attempts} exited {rc}:\n{''.join(attempt.tail)}")
                return
            break
    counts.completed_runs += 1
    check_finished_run(out, reference, counts)


def check_finished_run(out: Path, reference: Path, counts: SoakCounts) -> None:
    problems = damaged(out)
    counts.leftover_temps += [p for p in problems if p.endswith("leftover temporary file")]
    counts.damaged += [p for p in problems if not p.endswith("leftover temporary file")]
    diff = differences(reference, out)
    counts.differences += diff
    counts.runs_equal += not diff
    for path in sorted(out.rglob("*")):
        want = (0o777 if path.is_dir() else 0o666) & ~UMASK
        if stat.S_IMODE(path.stat().st_mode) != want:
            counts.wrong_modes.append(f"{path.relative_to(out)}: {stat.S_IMODE(path.stat().st_mode):o}, "
                                      f"expected {want:o}")


def assert_clean(counts: SoakCounts) -> None:
    assert not counts.failures, "a resume failed:\n" + "\n\n".join(counts.failures)
    assert not counts.damaged, f"damaged files: {counts.damaged}"
    assert not counts.differences, f"results differ from the uninterrupted run: {counts.differences[:20]}"
    assert not counts.leftover_temps, f"temporary files left behind: {counts.leftover_temps}"
    assert not counts.wrong_modes, f"files without the umask's mode: {counts.wrong_modes[:20]}"
    assert counts.survivors == 0, f"{counts.survivors} processes outlived their killed run"


# --------------------------------------------------------------------------- tests
def test_short_soak(tiny_reference, tmp_path):
    """Four kills in the default run, one at a random point of each of CAM training, CAM export,
    pseudo-mask writing and head training."""
    counts = SoakCounts()
    plan = {"train_cam": 1, "cams": 1, "pseudo_masks": 1, "train_head": 1}
    soak_episode(tmp_path / "run", tiny_reference, random.Random(int(os.environ.get("WSSS_SOAK_SEED", "11"))),
                 plan, counts, window=0.8)
    print("short soak:", json.dumps(counts.as_dict()))
    assert_clean(counts)
    assert sum(counts.kills.values()) >= 3, counts.as_dict()


@pytest.mark.slow
def test_long_soak(tmp_path):
    """≥ 100 kills over every stage of two configs; prints (and writes to $WSSS_SOAK_REPORT, if set)
    the counts per stage."""
    seed = int(os.environ.get("WSSS_SOAK_SEED", "2024"))
    target = int(os.environ.get("WSSS_SOAK_KILLS", "100"))
    rng = random.Random(seed)
    configs = {"dense_crf_pool": CRF_POOL, "psa_rw": PSA_RW}
    references = {name: run_to_completion(tmp_path / f"reference_{name}", threads=1, extra=extra)
                  for name, extra in configs.items()}
    counts = {name: SoakCounts() for name in configs}
    episode = 0
    started = time.monotonic()
    while sum(sum(c.kills.values()) for c in counts.values()) < target:
        name = list(configs)[episode % len(configs)]
        out = tmp_path / f"soak_{episode:03d}_{name}"
        plan = {stage: rng.randint(1, 3) for stage in STAGES[name]}
        plan["startup"] = rng.randint(0, 1)
        soak_episode(out, references[name], rng, plan, counts[name], extra=configs[name])
        if not counts[name].failures and not counts[name].differences:
            shutil.rmtree(out, ignore_errors=True)  # keep failed runs for inspection, free the disk otherwise
        episode += 1
    report = {"seed": seed, "episodes": episode, "seconds": round(time.monotonic() - started),
              "configs": {name: c.as_dict() for name, c in counts.items()}}
    report["total_kills"] = sum(c["kills"] for c in report["configs"].values())
    print("long soak:", json.dumps(report, indent=2))
    if os.environ.get("WSSS_SOAK_REPORT"):
        Path(os.environ["WSSS_SOAK_REPORT"]).write_text(json.dumps(
            {**report, "problems": {name: {"failures": c.failures, "damaged": c.damaged,
                                           "differences": c.differences[:50], "leftover_temps": c.leftover_temps,
                                           "wrong_modes": c.wrong_modes[:50]} for name, c in counts.items()}},
            indent=2) + "\n")
    for c in counts.values():
        assert_clean(c)

