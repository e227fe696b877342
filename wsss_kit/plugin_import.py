"""Importing a plugin's entry point so that nothing it does at import can stop or hang the caller.

:class:`ImportGuard` loads an entry point and turns every ``BaseException`` but
``KeyboardInterrupt`` (``SystemExit`` from a plugin calling ``sys.exit()`` included) into an
:class:`Outcome` with the cause. With a time limit (``WSSS_KIT_PLUGIN_IMPORT_TIMEOUT`` seconds,
default 30; ``0`` or ``none`` for no limit) the import runs in a daemon thread; when it does not
finish in time the outcome says so, the thread is left behind (Python cannot stop it) and a later
load of a module that waits on it times out at once instead of blocking again.

A module that is already imported, or whose package is being imported by the calling thread (a
plugin used while its own package initialises), is loaded directly: no thread, no delay.
:mod:`wsss_kit.registry` is the only user.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from .errors import PluginError

TIMEOUT_ENV = "WSSS_KIT_PLUGIN_IMPORT_TIMEOUT"
"""Environment variable: seconds a plugin's import may take before it is reported as timed out."""

DEFAULT_IMPORT_TIMEOUT = 30.0
"""Seconds a plugin's import may take when :data:`TIMEOUT_ENV` is not set."""

FROM_ENV: Any = object()
"""Sentinel: read the time limit from :data:`TIMEOUT_ENV` at each load."""


def import_timeout(value: str | None = None) -> float | None:
    """Seconds a plugin import may take (``value`` or :data:`TIMEOUT_ENV`); ``None`` for no limit.

    Raises:
        PluginError: the value is not a non-negative number of seconds (or ``none``).
    """
    if value is None:
        value = os.environ.get(TIMEOUT_ENV, "")
    text = value.strip().lower()
    if not text:
        return DEFAULT_IMPORT_TIMEOUT
    if text in ("none", "off", "inf"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # negative, NaN or not a number
        raise PluginError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds; expected e.g. "
                          f"{DEFAULT_IMPORT_TIMEOUT:g}, or 0 for no limit")
    return seconds if 0 < seconds < float("inf") else None


@dataclass
class Outcome:
    """What loading an entry point gave: the object, or ``error`` (``"Type: message"``)."""

    obj: Any = None
    error: str = ""
    traceback: str = ""
    timed_out: bool = False


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r}) while it was imported"
    return f"{type(exc).__name__}: {exc}"


class _Pending:
    """An entry point being loaded in a daemon thread."""

    def __init__(self, entry_point: Any, label: str) -> None:
        self.module: str = entry_point.module_name
        self.label = label
        self.done = threading.Event()
        self.outcome = Outcome()
        self.interrupt: KeyboardInterrupt | None = None
        self._entry_point = entry_point
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"wsss-kit import of {label}")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome.obj = self._entry_point.load()
        except KeyboardInterrupt as exc:
            self.interrupt = exc
        except BaseException as exc:  # noqa: BLE001 - reported as the plugin's error, never raised here
            self.outcome = Outcome(error=describe_exception(exc), traceback=traceback.format_exc())
        finally:
            self.done.set()


def _module_chain(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _initializing(module: str) -> bool:
    mod = sys.modules.get(module)
    return mod is not None and bool(getattr(getattr(mod, "__spec__", None), "_initializing", False))


class ImportGuard:
    """Loads entry points for one registry; remembers the imports that timed out.

    Args:
        timeout: seconds an import may take, ``None`` for no limit; by default :func:`import_timeout`.
    """

    def __init__(self, timeout: float | None = FROM_ENV) -> None:
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._timed_out: dict[str, Outcome] = {}
        self._stuck: list[_Pending] = []

    def load(self, key: str, entry_point: Any, label: str, hint: str = "") -> Outcome:
        """Load ``entry_point`` (``key`` identifies it; concurrent calls share one import).

        ``label`` names the plugin in messages; ``hint`` is appended to a time-out message.
        Raises only ``KeyboardInterrupt``.
        """
        timeout = import_timeout() if self._timeout is FROM_ENV else self._timeout
        module = entry_point.module_name
        with self._lock:
            if key in self._timed_out:
                return self._timed_out[key]
            pending = self._pending.get(key)
            if pending is not None and pending.thread is threading.current_thread():
                pending = None  # the plugin's own import uses it: the module is initialising in this thread
            elif pending is None and timeout is not None:
                blocker = self._blocked_by(module)
                if blocker is not None:
                    return self._time_out(key, f"module {module!r} is still being imported by the load of "
                                               f"{blocker.label}, which timed out", hint)
                if not self._can_import_directly(module):
                    pending = self._pending[key] = _Pending(entry_point, label)
        if pending is None:
            try:
                return Outcome(obj=entry_point.load())
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit included: the plugin is broken
                return Outcome(error=describe_exception(exc), traceback=traceback.format_exc())
        finished = pending.done.wait(timeout)
        with self._lock:
            if self._pending.get(key) is pending:
                del self._pending[key]
            if key in self._timed_out:
                return self._timed_out[key]
            if not (finished or pending.done.is_set()):
                self._stuck.append(pending)
                return self._time_out(key, f"importing {module!r} did not finish within {timeout:g} s; "
                                           f"it may be waiting on the network, a lock or input", hint)
        if pending.interrupt is not None:
            raise pending.interrupt
        return pending.outcome

    def _time_out(self, key: str, cause: str, hint: str) -> Outcome:
        outcome = Outcome(error=f"TimeoutError: import timed out: {cause}. Raise the limit with "
                                f"{TIMEOUT_ENV}=SECONDS (0 for none){hint}", timed_out=True)
        self._timed_out[key] = outcome
        return outcome

    @staticmethod
    def _can_import_directly(module: str) -> bool:
        """The module is loaded, or a package of it is being imported (a thread would wait on it)."""
        if module in sys.modules and not _initializing(module):
            return True
        return any(_initializing(m) for m in _module_chain(module))

    def _blocked_by(self, module: str) -> _Pending | None:
        """A timed-out import, still running, in whose package ``module`` is being imported."""
        if not any(_initializing(m) for m in _module_chain(module)):
            return None
        top = module.split(".")[0]
        return next((p for p in self._stuck if not p.done.is_set() and p.module.split(".")[0] == top), None)
