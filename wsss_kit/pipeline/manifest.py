"""The run manifest: which stages of a run directory are complete, and with which settings.

Each stage records a fingerprint of the config sections it depends on (its own and its upstream
stages'). Re-running with unchanged settings skips complete stages; changed settings are an error
that says which stage and which sections differ, instead of silently mixing outputs.

Under ``torch.distributed`` every process keeps the same manifest in memory (they make the same
calls), only rank 0 writes the file, and :meth:`Manifest.mark_complete` waits for every process
first, so no stage is recorded complete while a process is still working on it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_text
from ..engine.distributed import barrier, is_main_process
from ..errors import ConfigError


def fingerprint(sections: Mapping[str, Any]) -> str:
    """A short stable hash of config sections (JSON with sorted keys)."""
    blob = json.dumps(sections, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Manifest:
    """``manifest.json`` in a run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "manifest.json"
        self.data: dict[str, Any] = {"stages": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"run manifest {self.path} is not valid JSON ({exc}); delete it to start the run over"
                ) from None
            self.data.setdefault("stages", {})

    def _save(self) -> None:
        if is_main_process():
            write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def is_complete(self, stage: str, fp: str) -> bool:
        """True if ``stage`` finished with fingerprint ``fp``.

        A stage that finished, or only started, with another fingerprint is an error: its files
        were (partly) made with other settings and must not be mixed with new ones.
        """
        entry = self.data["stages"].get(stage)
        if not entry:
            return False
        if entry.get("fingerprint") != fp:
            state = "completed" if entry.get("complete") else "started"
            raise ConfigError(
                f"stage {stage!r} in {self.path.parent} was {state} with different settings "
                f"(fingerprint {entry.get('fingerprint')} vs {fp} now); use another run directory "
                f"(--out), or rerun with --restart {stage} to recompute it and everything after it"
            )
        return bool(entry.get("complete"))

    def mark_started(self, stage: str, fp: str, **info: Any) -> None:
        """Record that ``stage`` is being computed with fingerprint ``fp`` (kept if already there);
        ``info`` (e.g. ``settings``, the config sections behind ``fp``) is stored with it."""
        if stage not in self.data["stages"]:
            self.data["stages"][stage] = {
                "complete": False,
                "fingerprint": fp,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **info,
            }
            self._save()

    def mark_complete(self, stage: str, fp: str, **info: Any) -> None:
        """Record ``stage`` complete with ``info``; under torch.distributed a collective (all processes
        call it once their part is done)."""
        barrier()
        self.data["stages"][stage] = {
            "complete": True,
            "fingerprint": fp,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **info,
        }
        self._save()

    def info(self, stage: str) -> dict[str, Any]:
        return dict(self.data["stages"].get(stage, {}))

    def reset(self, stage: str) -> None:
        if self.data["stages"].pop(stage, None) is not None:
            self._save()
