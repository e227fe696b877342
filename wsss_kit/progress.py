"""Progress of training and inference that shows in a terminal and in a redirected log alike.

:class:`Progress` is the one progress reporter of the core (training loop, CAM export, seeds,
pseudo masks, predictions, scoring, ``wsss eval``). It picks its form once, when it is made:

* ``"bar"``: a tqdm bar on stderr, the scalars (loss terms, lr) in its postfix; chosen when
  stderr is a terminal.
* ``"lines"``: plain lines on stdout, where the runner's ``[wsss] <stage>: running`` messages
  go, so a run under ``nohup``, SLURM or CI shows its progress in its log file::

      [wsss] train CAM: step 20/100 (20%) loss 0.6931 cls 0.4 lr 0.0095 | 31.2 img/s | 0:06 elapsed, ETA 0:25

  A line is printed every ``every_steps`` updates (the training loop: ``log_every``), or every
  ``every_seconds`` seconds (inference), and always at the end.
* ``"off"``: nothing (``enabled=False``, or a process of rank > 0 in an initialised
  ``torch.distributed`` group: one progress per run, rank 0's).

The environment variable ``WSSS_KIT_PROGRESS`` (``bar``, ``lines``, ``off``) overrides the
choice, and ``WSSS_KIT_PROGRESS_SECONDS`` sets the default interval of inference lines.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar

from .errors import ConfigError

__all__ = ["MODE_ENV", "SECONDS_ENV", "Progress", "check_environment", "format_duration", "progress_mode"]

MODE_ENV = "WSSS_KIT_PROGRESS"
"""Environment variable: ``bar``, ``lines`` or ``off`` (default: ``bar`` when stderr is a terminal, else ``lines``)."""

SECONDS_ENV = "WSSS_KIT_PROGRESS_SECONDS"
"""Environment variable: seconds between progress lines of inference loops (default 30)."""

DEFAULT_SECONDS = 30.0
MODES = ("bar", "lines", "off")

T = TypeVar("T")


def progress_mode(stream: IO[str] | None = None) -> str:
    """``WSSS_KIT_PROGRESS`` when set, else ``"bar"`` if ``stream`` (default stderr) is a terminal, else ``"lines"``.

    Raises:
        ConfigError: ``WSSS_KIT_PROGRESS`` is set to something else than ``bar``, ``lines`` or ``off``.
    """
    value = os.environ.get(MODE_ENV, "").strip().lower()
    if value:
        if value not in MODES:
            raise ConfigError(f"{MODE_ENV}={value!r}; expected one of {', '.join(MODES)}")
        return value
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or fake stream
        return "lines"


def _secondary_rank() -> bool:
    """This process is rank > 0 of an initialised torch.distributed group (imported only if in use)."""
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized() and dist.get_rank() > 0)


def _interval_seconds() -> float:
    value = os.environ.get(SECONDS_ENV, "").strip()
    if not value:
        return DEFAULT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{SECONDS_ENV}={value!r}; expected a positive number of seconds, e.g. 30")
    return seconds


def check_environment() -> None:
    """Check ``WSSS_KIT_PROGRESS`` and ``WSSS_KIT_PROGRESS_SECONDS`` now (a command calls it before any
    work, so a typo does not stop a run at its first progress report).

    Raises:
        ConfigError: either variable is malformed.
    """
    progress_mode()
    _interval_seconds()


def format_duration(seconds: float) -> str:
    """``75.0`` → ``"1:15"``, ``3725`` → ``"1:02:05"``; ``"?"`` when not finite."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_value(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """A progress reporter over ``total`` units: a tqdm bar or plain lines (see the module docstring).

    Args:
        total: units to do in all (steps, images); ``None`` when unknown.
        desc: what is running, e.g. ``"train CAM"`` or ``"CAMs [train]"``.
        unit: the unit of ``total`` (``"img"``, ``"step"``).
        initial: units already done (a resumed run); rates and ETA count only this run's units.
        every_steps: in lines mode, print every ``every_steps`` units (0: by time only).
        every_seconds: in lines mode, print when this many seconds passed since the last line
            (default ``WSSS_KIT_PROGRESS_SECONDS``, 30; ignored when ``every_steps`` is given).
        items_per_unit: images per unit, for the throughput (a training step: batch × accumulation).
        enabled: False prints nothing; processes of rank > 0 under ``torch.distributed`` print nothing either.
        mode: ``"bar"``, ``"lines"`` or ``"off"``; default :func:`progress_mode`.
        stream: where lines go (default stdout; bars always go to stderr).
        leave: keep the bar on the terminal when it closes (False for short passes, e.g. scoring).
    """

    def __init__(self, total: int | None = None, desc: str = "", *, unit: str = "img", initial: int = 0,
                 every_steps: int = 0, every_seconds: float | None = None, items_per_unit: float = 1.0,
                 enabled: bool = True, mode: str | None = None, stream: IO[str] | None = None,
                 leave: bool = True) -> None:
        if mode is not None and mode not in MODES:
            raise ConfigError(f"progress mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode = "off" if not enabled or _secondary_rank() else (mode or progress_mode())
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = int(initial)
        self.every_steps = max(int(every_steps), 0)
        self.every_seconds = (every_seconds if every_seconds is not None else
                              (_interval_seconds() if self.mode == "lines" and not self.every_steps else 0.0))
        self.items_per_unit = float(items_per_unit)
        self.scalars: dict[str, float] = {}
        self._stream = stream
        self._start = self._last_line = time.perf_counter()
        self._printed_n = self.n
        self._closed = False
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave)

    # ---------------------------------------------------------------- tqdm-like use
    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        # After an exception the last line would claim a finished run: only bars are closed then.
        self.close(final_line=exc[0] is None)

    def wrap(self, iterable: Iterable[T]) -> Iterator[T]:
        """Yield the items of ``iterable``, one unit each, and close at the end."""
        try:
            for item in iterable:
                yield item
                self.update(1)
        except BaseException:
            self.close(final_line=False)
            raise
        self.close()

    def set_scalars(self, scalars: Mapping[str, float]) -> None:
        """Scalars shown from now on (a bar's postfix, each line's values): loss terms, lr."""
        self.scalars = dict(scalars)
        if self._bar is not None:
            self._bar.set_postfix({k: _format_value(v) for k, v in self.scalars.items()}, refresh=False)

    def update(self, n: int = 1, scalars: Mapping[str, float] | None = None) -> None:
        """Advance by ``n`` units; with ``scalars``, show them from now on (see :meth:`set_scalars`)."""
        if scalars is not None:
            self.set_scalars(scalars)
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines" and self._line_due():
            self._print_line()

    def close(self, final_line: bool = True) -> None:
        """Close the bar, or print the last line (when units were done since the last one)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and final_line and self.n != self._printed_n:
            self._print_line()

    # ---------------------------------------------------------------- lines
    def _line_due(self) -> bool:
        if self.total is not None and self.n >= self.total:
            return True
        if self.every_steps:
            return self.n % self.every_steps == 0
        return self.every_seconds > 0 and time.perf_counter() - self._last_line >= self.every_seconds

    def line(self) -> str:
        """The text of a progress line for the current state (what lines mode prints)."""
        elapsed = time.perf_counter() - self._start
        done = self.n - self.start_n
        if self.unit == "step":
            head = f"step {self.n}" + (f"/{self.total}" if self.total is not None else "")
        else:
            head = f"{self.n}" + (f"/{self.total}" if self.total is not None else "") + f" {self.unit}"
        if self.total:
            head += f" ({100 * self.n / self.total:.0f}%)"
        parts = [head + "".join(f" {k} {_format_value(v)}" for k, v in self.scalars.items())]
        if done > 0 and elapsed > 0:
            parts.append(f"{done * self.items_per_unit / elapsed:.3g} img/s")
        timing = f"{format_duration(elapsed)} elapsed"
        if self.total is not None and self.n < self.total:
            eta = (self.total - self.n) * elapsed / done if done > 0 else float("nan")
            timing += f", ETA {format_duration(eta)}"
        parts.append(timing)
        return f"[wsss] {self.desc}: " + " | ".join(parts)

    def _print_line(self) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        print(self.line(), file=stream, flush=True)
        self._last_line = time.perf_counter()
        self._printed_n = self.n
