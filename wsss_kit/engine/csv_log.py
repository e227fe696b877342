"""The per-step training log ``log.csv``: one row per optimizer step, consistent across resumes.

Rows are appended in whole lines (a log that grows for hours cannot be rewritten on every
flush); a crash can at worst leave a partial last line or rows past the last checkpoint. Both
are repaired on resume: the file is rewritten atomically with the rows up to the checkpoint's
step, so no step ever appears twice.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any

from ..atomic import write_text

__all__ = ["CsvLog", "read_log"]

FIRST = ("step", "loss")
LAST = ("lr", "seconds")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a ``log.csv`` as dicts (``step`` an int, other values floats; empty cells skipped).

    A malformed row (e.g. a partial last line after a crash) ends the log.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for raw in reader:
            if None in raw or None in raw.values():  # a short or overlong line: a crash mid-write
                break
            try:
                row: dict[str, float] = {"step": int(raw["step"])}
                for key, value in raw.items():
                    if key != "step" and key is not None and value not in (None, ""):
                        row[key] = float(value)
            except (TypeError, ValueError, KeyError):
                break
            rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


class CsvLog:
    """Append-only CSV of training rows; ``keep_until`` trims rows of an interrupted run.

    Args:
        path: the CSV file.
        keep_until: resume point: rows with ``step <= keep_until`` are kept, later ones dropped;
            ``None`` starts a new log (an existing file is replaced).
        enabled: False on non-main ranks (nothing is written).
    """

    def __init__(self, path: str | os.PathLike[str], keep_until: int | None = None, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.rows: list[dict[str, float]] = []
        self.fields: list[str] | None = None
        self._pending: list[dict[str, Any]] = []
        self._warned: set[str] = set()
        if keep_until is not None:
            self.rows = [r for r in read_log(self.path) if r["step"] <= keep_until]
            if self.rows:
                with open(self.path, newline="", encoding="utf-8") as fh:
                    self.fields = next(csv.reader(fh))
        if enabled:
            self._rewrite()

    def _rewrite(self) -> None:
        if self.fields is None:
            if self.path.exists():
                self.path.unlink()
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(row.get(k)) for k in self.fields})
        write_text(self.path, buf.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Record one step's row (written at the next :meth:`flush`)."""
        if self.fields is None:
            middle = sorted(k for k in row if k not in FIRST + LAST)
            self.fields = [k for k in FIRST if k in row] + middle + [k for k in LAST if k in row]
            if self.enabled:
                self._rewrite()
        extra = set(row) - set(self.fields) - self._warned
        if extra:
            self._warned |= extra
            warnings.warn(f"{self.path}: terms {sorted(extra)} appeared after the log's columns were fixed "
                          f"({', '.join(self.fields)}); they are kept in the history but not in the CSV",
                          stacklevel=2)
        self.rows.append(dict(row))
        self._pending.append(row)

    def flush(self) -> None:
        """Append the pending rows to the file, in whole lines, and sync them to disk."""
        if not self._pending or not self.enabled or self.fields is None:
            self._pending.clear()
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n", extrasaction="ignore")
        for row in self._pending:
            writer.writerow({k: _fmt(row.get(k)) for k in self.fields})
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        self._pending.clear()
