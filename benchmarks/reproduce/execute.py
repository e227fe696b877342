"""Running a table's resolved runs in order, resuming what is done.

A ``wsss run`` goes through :func:`wsss_kit.pipeline.runner.run_pipeline` in this process (it skips
complete stages); a command run (``Run.command``) is a subprocess with its resolved config written
to ``config.reproduce.yaml`` in its folder, recorded as done in ``reproduce_done.json`` once it exits
with status 0 (a rerun skips it while that record matches its argv). What each run prints goes to
``DIR/TABLE/logs/<run>.log``; the terminal gets one line per run.

Run folders are shared between tables (``DIR/runs/<name>-<digest>``), so two harnesses on one ``--out``
may reach the same run at once: each run is executed under an exclusive lock on
``DIR/runs/.<folder>.lock`` (``flock``; none where the platform has no ``fcntl``), and the second
harness stops with an error naming the folder and the process that holds it instead of writing into
it concurrently.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

from wsss_kit.atomic import write_text
from wsss_kit.config import dump_config
from wsss_kit.errors import WSSSError
from wsss_kit.pipeline.runner import run_pipeline

from .resolve import ResolvedRun

__all__ = ["ReproduceRunError", "RunOutcome", "execute_runs"]

DONE_FILE = "reproduce_done.json"


class ReproduceRunError(WSSSError):
    """A run of a table failed; the message names the run and its log."""


@dataclass
class RunOutcome:
    """What happened to one run in this call."""

    name: str
    run_dir: Path
    log: Path
    status: str
    """``"ran"`` (computed something) or ``"complete"`` (everything was done before)."""
    wall_seconds: float
    stages_run: list[str] = field(default_factory=list)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _stages_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("stages", {}))


def _tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, progress bars left out."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    return "\n".join(kept[-lines:])


def _run_pipeline(rr: ResolvedRun, log: Path) -> list[str]:
    before = _stages_record(rr.run_dir)
    with open(log, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        print(f"=== {_now()} wsss run {rr.run.config} -> {rr.run_dir}", flush=True)
        after = run_pipeline(rr.cfg, rr.run_dir, stages=rr.stages, source=f"run {rr.run.name} ({rr.run.config})")
    # stages computed in this call; a stage recorded as "nothing to do" computed nothing
    return [s for s, rec in after.items() if rec != before.get(s) and not rec.get("skipped")]


def _run_command(rr: ResolvedRun, log: Path) -> list[str]:
    assert rr.argv is not None
    done = rr.run_dir / DONE_FILE
    if done.exists():
        try:
            if json.loads(done.read_text(encoding="utf-8")).get("argv") == rr.argv:
                return []
        except (OSError, json.JSONDecodeError):
            pass  # a damaged record: run the command again (it resumes its own work)
    rr.run_dir.mkdir(parents=True, exist_ok=True)
    write_text(rr.config_file, dump_config(rr.cfg))
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"=== {_now()} {' '.join(rr.argv)}\n")
        fh.flush()
        code = subprocess.run(rr.argv, check=False, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0:
        raise ReproduceRunError(f"run {rr.run.name!r}: command {' '.join(rr.argv)} exited with status {code}; "
                                f"log {log}:\n{_tail(log)}")
    write_text(done, json.dumps({"argv": rr.argv, "finished": _now(),
                                 "wall_seconds": round(time.perf_counter() - start, 1)}, indent=2) + "\n")
    return ["command"]


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``run_dir`` (a file beside it) while the block runs.

    Raises:
        ReproduceRunError: another process holds it (named by the pid it wrote).
    """
    if fcntl is None:
        yield
        return
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path = run_dir.parent / f".{run_dir.name}.lock"
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ReproduceRunError(f"run folder {run_dir} is in use by {holder}: another `python -m benchmarks "
                                    f"reproduce` on the same --out is running it; wait for it to finish (then this "
                                    f"command resumes), or use another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} (since {_now()})")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def execute_runs(runs: Sequence[ResolvedRun], log_dir: Path, *,
                 echo: Callable[[str], None] = print) -> list[RunOutcome]:
    """Run (or resume) ``runs`` in order; one line per run through ``echo`` as it starts and ends.

    Raises:
        ReproduceRunError: a run failed (its message ends with the tail of the run's log); the runs
            before it are kept and a rerun resumes from the failed one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for i, rr in enumerate(runs, 1):
        log = log_dir / f"{rr.run.name}.log"
        what = " ".join(rr.argv) if rr.argv is not None else f"wsss run {rr.run.config}"
        echo(f"[{i}/{len(runs)}] {rr.run.name}: {what}")
        start = time.perf_counter()
        try:
            with run_lock(rr.run_dir):
                ran = _run_command(rr, log) if rr.argv is not None else _run_pipeline(rr, log)
        except ReproduceRunError:
            raise
        except Exception as exc:  # a plugin's RuntimeError as much as a ConfigError: name the run and its log
            what = str(exc) if isinstance(exc, WSSSError) else f"{type(exc).__name__}: {exc}"
            raise ReproduceRunError(f"run {rr.run.name!r} ({rr.run.config}) failed: {what}\nlog {log}:\n{_tail(log)}") from exc
        wall = round(time.perf_counter() - start, 1)
        status = "ran" if ran else "complete"
        outcomes.append(RunOutcome(rr.run.name, rr.run_dir, log, status, wall, ran))
        detail = f"ran {', '.join(ran)}" if ran else "already complete, nothing to do"
        echo(f"[{i}/{len(runs)}] {rr.run.name}: {detail} ({wall:.1f} s)")
    return outcomes
