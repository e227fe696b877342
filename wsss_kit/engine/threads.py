"""How many threads and worker processes a run uses, so that nothing oversubscribes the cores.

A run has three consumers of CPU cores in each process: torch's intra-op threads, the dense-CRF
worker processes (pydensecrf holds the GIL, so CRFs run in processes) and the data-loader worker
processes. Left alone each takes every core: torch starts one thread per core, the CRF pool one
process per core, and under ``torchrun`` each of the N processes on a machine does all of this
again. On a shared 2-core machine that made a small run 4× slower than ``OMP_NUM_THREADS=1``.

:func:`plan_threads` shares the cores this process may run on (``os.sched_getaffinity``) among
the processes ``torchrun`` started on this machine (``LOCAL_WORLD_SIZE``) and gives each process
its share::

    share          = max(1, cpus // local_world_size)
    loader_workers = min(4, share // 4)           # 0 below 4 cores: a worker would compete with compute
    torch_threads  = max(1, share - loader_workers)   # OMP_NUM_THREADS, when set, is used instead
    crf_workers    = share                        # the CRFs run while this process waits for them

Each value given explicitly (an argument, i.e. a config key) wins over the rule and over the
environment; ``OMP_NUM_THREADS`` wins over the rule for torch's threads (``torchrun`` sets it to 1
for multi-process runs unless it is set already). :func:`apply_threads` sets torch's thread count;
``wsss run`` calls both at the start of a run with the config's ``threads`` section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["THREAD_KEYS", "ThreadPlan", "apply_threads", "available_cpus", "current_plan", "plan_from_config",
           "plan_threads"]

THREAD_KEYS = ("torch_threads", "crf_workers", "loader_workers")
"""The keys of a run config's ``threads`` section (each an integer or null = the rule above)."""

MAX_LOADER_WORKERS = 4
"""Most data-loader workers the rule gives one process (image decoding and augmentation here are light)."""


@dataclass(frozen=True)
class ThreadPlan:
    """What one process uses.

    Attributes:
        cpus: cores this process may run on. local_world_size: processes on this machine.
        torch_threads: torch intra-op threads (``torch.set_num_threads``), >= 1.
        crf_workers: dense-CRF worker processes (0 = CRFs in this process).
        loader_workers: ``DataLoader`` worker processes (0 = load in this process).
        sources: for each of the three, where its value came from: ``"config"``,
            ``"OMP_NUM_THREADS"`` or ``"default"``.
    """

    cpus: int
    local_world_size: int
    torch_threads: int
    crf_workers: int
    loader_workers: int
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def share(self) -> int:
        """Cores per process: ``max(1, cpus // local_world_size)``."""
        return max(1, self.cpus // self.local_world_size)

    def describe(self) -> str:
        """One line for logs, e.g. ``"2 cores, 1 process: torch 2 threads (default), ..."``."""
        src = dict(self.sources)
        return (f"{self.cpus} cores, {self.local_world_size} process(es) on this machine: "
                f"torch {self.torch_threads} thread(s) ({src.get('torch_threads', 'default')}), "
                f"{self.crf_workers} CRF worker(s) ({src.get('crf_workers', 'default')}), "
                f"{self.loader_workers} data-loader worker(s) ({src.get('loader_workers', 'default')})")


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _count(value: object, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum} or null (automatic), got {value!r}")
    return value


def _env_count(env: Mapping[str, str], key: str, minimum: int) -> int | None:
    raw = env.get(key, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r} must be an integer >= {minimum}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {key}={raw!r} must be an integer >= {minimum}")
    return value


def plan_threads(torch_threads: int | None = None, crf_workers: int | None = None,
                 loader_workers: int | None = None, *, cpus: int | None = None,
                 local_world_size: int | None = None, env: Mapping[str, str] | None = None) -> ThreadPlan:
    """The thread plan of this process (see the module docstring for the rule).

    Args:
        torch_threads, crf_workers, loader_workers: explicit values (a run config's ``threads``
            section); ``None`` = the rule. They win over everything else.
        cpus: cores available (default: this process's affinity, :func:`available_cpus`).
        local_world_size: processes sharing this machine (default: ``LOCAL_WORLD_SIZE``, else 1).
        env: the environment to read ``OMP_NUM_THREADS`` and ``LOCAL_WORLD_SIZE`` from (default
            ``os.environ``).

    Raises:
        ConfigError: a value that is not a non-negative integer (``torch_threads``, ``cpus``,
            ``local_world_size``: positive), named with the value given.
    """
    env = os.environ if env is None else env
    explicit = {"torch_threads": _count(torch_threads, "threads.torch_threads", 1),
                "crf_workers": _count(crf_workers, "threads.crf_workers", 0),
                "loader_workers": _count(loader_workers, "threads.loader_workers", 0)}
    cpus = available_cpus() if cpus is None else _count(cpus, "cpus", 1)
    if local_world_size is None:
        local_world_size = _env_count(env, "LOCAL_WORLD_SIZE", 1) or 1
    else:
        _count(local_world_size, "local_world_size", 1)
    assert cpus is not None
    share = max(1, cpus // local_world_size)
    sources = {k: "config" for k, v in explicit.items() if v is not None}
    loaders = explicit["loader_workers"]
    if loaders is None:
        loaders = min(MAX_LOADER_WORKERS, share // 4)
        sources["loader_workers"] = "default"
    crf = explicit["crf_workers"]
    if crf is None:
        crf = share
        sources["crf_workers"] = "default"
    threads = explicit["torch_threads"]
    if threads is None:
        threads = _env_count(env, "OMP_NUM_THREADS", 1)
        sources["torch_threads"] = "OMP_NUM_THREADS" if threads is not None else "default"
        if threads is None:
            threads = max(1, share - loaders)
    return ThreadPlan(cpus=cpus, local_world_size=local_world_size, torch_threads=threads, crf_workers=crf,
                      loader_workers=loaders, sources=sources)


_APPLIED: list[ThreadPlan] = []


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Set torch's intra-op threads from ``plan``; make the result this process's :func:`current_plan`.

    A value from the config or ``OMP_NUM_THREADS`` is set as it is. The rule's default only caps:
    a process already running fewer torch threads (a script's or a test's
    ``torch.set_num_threads``) keeps them, and the returned plan says so (source ``"process"``).
    """
    current = torch.get_num_threads()
    if plan.sources.get("torch_threads", "default") == "default" and current < plan.torch_threads:
        plan = replace(plan, torch_threads=current, sources={**plan.sources, "torch_threads": "process"})
    if current != plan.torch_threads:
        torch.set_num_threads(plan.torch_threads)
    _APPLIED[:] = [plan]
    return plan


def current_plan() -> ThreadPlan:
    """The plan :func:`apply_threads` last applied in this process, else :func:`plan_threads`'s defaults."""
    return _APPLIED[0] if _APPLIED else plan_threads()


def plan_from_config(section: Mapping[str, object] | None, where: str = "threads", **kwargs: Any) -> ThreadPlan:
    """:func:`plan_threads` from a run config's ``threads`` section (``None``: all automatic).

    ``kwargs`` (``cpus``, ``local_world_size``, ``env``) go to :func:`plan_threads`.

    Raises:
        ConfigError: an unknown key (naming it, ``where`` and the known keys) or a bad value.
    """
    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(THREAD_KEYS)}, got {section!r}")
    unknown = sorted(set(section) - set(THREAD_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                          f"known: {', '.join(THREAD_KEYS)}")
    return plan_threads(**{k: section.get(k) for k in THREAD_KEYS}, **kwargs)  # type: ignore[arg-type]
