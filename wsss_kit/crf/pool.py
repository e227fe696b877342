"""A reusable pool of CRF worker processes.

pydensecrf holds the GIL during inference, so only processes run CRFs in parallel. The
workers are started with the ``forkserver`` method (``spawn`` where that is unavailable): a
plain ``fork`` of a process that runs torch's thread pools can deadlock.

Fast start: pickle sends a function by its module path, and importing ``wsss_kit.crf...`` would
run ``wsss_kit/__init__.py``, which imports torch (seconds and hundreds of MB per worker).
Instead, every worker runs a short bootstrap (passed as the pool initializer, through the
builtin ``exec``) that loads ``dense_crf.py`` from its file under the stand-alone module name
:data:`WORKER_MODULE`; the parent loads it under the same name, and tasks refer to that module.

``spawn``/``forkserver`` children also re-import the script the user ran (for the ``wsss``
command that imports torch). Our workers never unpickle anything defined in ``__main__``, so
while this module submits work (which is when the executor starts processes) ``__main__`` is
swapped for an empty module and the children skip that import. A worker so imports only numpy
and pydensecrf. The pool is reused across calls, so each worker starts once.

Workers die with the process that made the pool, even when it is killed with SIGKILL (which
runs no clean-up). ``forkserver`` workers are children of the fork server, not of that process,
and both would otherwise outlive it: each worker holds the descriptor whose closing tells the
fork server that its last client is gone, and the executor's queues stay open in the other
workers. So the initializer of every worker (:data:`_GUARD`)

1. closes its copy of that descriptor (workers never start processes), so the fork server exits
   when the pool's process ends;
2. on Linux asks for SIGKILL when its parent ends (``prctl(PR_SET_PDEATHSIG)``), then checks that
   the parent it saw before is still its parent and that the pool's process is still alive,
   closing the race with a parent that ended first;
3. starts a daemon thread that waits on the pool process's sentinel (a pipe that reads EOF
   when that process ends, see ``multiprocessing.parent_process()``) and every second compares
   ``os.getppid()`` with the parent it saw: the portable way (it runs between CRFs only, as
   pydensecrf holds the GIL, so it acts once the current chunk is done).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import sys
import threading
import types
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..engine.threads import available_cpus, current_plan

if TYPE_CHECKING:  # pragma: no cover
    from wsss_kit.crf.params import CRFParams

__all__ = ["CRFPool", "available_cpus", "check_workers", "dense_crf_batch", "resolve_workers", "shared_pool",
           "shutdown_shared_pool"]

# Not ``from . import dense_crf``: the package re-exports the function of that name.
_dense_crf_module = importlib.import_module(".dense_crf", __package__)

WORKER_MODULE = "_wsss_kit_crf_worker"
"""Name under which worker processes (and the parent, for pickling) load ``dense_crf.py``."""

_BOOTSTRAP = """
import importlib.util, sys
if {name!r} not in sys.modules:
    _spec = importlib.util.spec_from_file_location({name!r}, {path!r})
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[{name!r}] = _module
    _spec.loader.exec_module(_module)
"""


_GUARD = """
def _wsss_kit_die_with_parent(creator_pid, pdeathsig):
    import multiprocessing, os, signal, sys, threading
    from multiprocessing.connection import wait

    try:  # 1. let the fork server end with the pool's process (we never start processes)
        from multiprocessing import forkserver
        server = forkserver._forkserver
        if getattr(server, "_forkserver_alive_fd", None) is not None:
            os.close(server._forkserver_alive_fd)
            server._forkserver_alive_fd = None
    except Exception:
        pass
    parent = os.getppid()
    creator = multiprocessing.parent_process()

    def creator_gone():
        if creator is not None:
            return not creator.is_alive()
        return parent != creator_pid  # no sentinel: the pool's process must be our parent

    if pdeathsig and sys.platform.startswith("linux"):  # 2. the kernel kills us with our parent
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if os.getppid() != parent or creator_gone():  # the parent or the pool's process ended first
        os._exit(1)

    def watch():  # 3. portable fallback
        sentinel = [creator.sentinel] if creator is not None else []
        while True:
            if sentinel and wait(sentinel, timeout=1.0):
                os._exit(1)
            if not sentinel:
                threading.Event().wait(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wsss-kit-crf-watchdog", daemon=True).start()

_wsss_kit_die_with_parent({creator_pid!r}, {pdeathsig!r})
del _wsss_kit_die_with_parent
"""

_PDEATHSIG = True
"""Whether workers ask Linux for a parent-death signal (tests turn it off to check the fallback)."""


def _bootstrap_code() -> str:
    file = _dense_crf_module.__file__
    assert file is not None  # imported from its .py file above
    path = str(Path(file).resolve())
    return _BOOTSTRAP.format(name=WORKER_MODULE, path=path)


def _initializer_code() -> str:
    """What every worker runs first: :data:`_GUARD` for the pool's process, then the bootstrap."""
    return _GUARD.format(creator_pid=os.getpid(), pdeathsig=_PDEATHSIG) + _bootstrap_code()


def worker_module() -> Any:
    """The stand-alone copy of ``dense_crf.py`` whose functions are sent to workers."""
    if WORKER_MODULE not in sys.modules:
        exec(_bootstrap_code(), {})  # noqa: S102 - our own fixed code, see the module docstring
    return sys.modules[WORKER_MODULE]


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Swap ``sys.modules["__main__"]`` for an empty module, so that processes started inside do
    not re-import the user's script (see the module docstring)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__file__", None) is None:
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _context() -> Any:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class CRFPool:
    """``workers`` processes that run dense CRFs; reuse one across batches.

    Example::

        with CRFPool(4) as pool:
            outs = pool.map(images, probs, get_params("default").as_tuple())
    """

    def __init__(self, workers: int) -> None:
        if int(workers) < 1:
            raise ValueError(f"a CRF pool needs at least 1 worker, got {workers}")
        self.workers = int(workers)
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=exec,
            initargs=(_initializer_code(), {}),
        )
        self._task = worker_module().crf_chunk

    @property
    def closed(self) -> bool:
        return self._executor is None

    def map(
        self,
        images: Sequence[np.ndarray],
        probs: Sequence[np.ndarray],
        settings: Any,
        min_prob: float = _dense_crf_module.DEFAULT_MIN_PROB,
    ) -> list[np.ndarray]:
        """CRF of every ``(images[i], probs[i])``, results in input order.

        ``images``/``probs`` are numpy arrays already checked by ``check_crf_inputs`` (uint8
        ``(H, W, 3)``, float32 ``(K, H, W)``); ``settings`` a :class:`CRFParams` or its
        ``as_tuple()``.

        Raises:
            RuntimeError: a CRF failed (naming the image index) or a worker process died.
        """
        if self._executor is None:
            raise RuntimeError("this CRFPool has been closed")
        # Plain numbers only: a CRFParams would make the worker import wsss_kit (and torch).
        if hasattr(settings, "as_tuple"):
            settings = settings.as_tuple()
        if len(settings) != 6:
            raise ValueError(f"CRF settings must be 6 numbers (see CRFParams.as_tuple), got {settings!r}")
        settings = (*(float(v) for v in settings[:5]), int(settings[5]))
        n = len(images)
        if n == 0:
            return []
        # A few chunks per worker: fewer round trips for small images, still balanced; chunks
        # interleave indices so that images of similar size spread over the workers.
        n_chunks = min(n, self.workers * 4)
        chunks = [[(i, images[i], probs[i]) for i in range(j, n, n_chunks)] for j in range(n_chunks)]
        futures: list[Future] = []
        try:
            with _main_script_hidden():  # worker processes are started by submit()
                for chunk in chunks:
                    futures.append(self._executor.submit(self._task, chunk, settings, float(min_prob)))
        except BrokenProcessPool as exc:
            self.close(wait=False)
            raise RuntimeError(f"the CRF worker pool is broken; start a new one: {exc}") from exc
        results: list[Any] = [None] * n
        for chunk, future in zip(chunks, futures):
            try:
                done = future.result()
            except BrokenProcessPool as exc:
                for f in futures:
                    f.cancel()
                self.close(wait=False)
                indices = ", ".join(str(i) for i, _, _ in chunk)
                raise RuntimeError(
                    f"a dense CRF worker process died while processing images {indices} of {n} "
                    f"(killed, out of memory, or a crash inside pydensecrf)"
                ) from exc
            for index, out, error in done:
                if error is not None:
                    for f in futures:
                        f.cancel()
                    raise RuntimeError(f"dense CRF failed on image {index} of {n}: {error}")
                results[index] = out
        return results

    def close(self, wait: bool = True) -> None:
        """Stop the worker processes."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)
        with _LOCK:
            for key, pool in list(_SHARED.items()):
                if pool is self:
                    del _SHARED[key]

    def __enter__(self) -> "CRFPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CRFPool(workers={self.workers}{', closed' if self.closed else ''})"


_LOCK = threading.Lock()
_SHARED: dict[str, CRFPool] = {}


def shared_pool(workers: int) -> CRFPool:
    """The process-wide pool with ``workers`` processes, started on first use and kept.

    Asking for a different size replaces the pool. The processes end with the interpreter or
    with :func:`shutdown_shared_pool`.
    """
    with _LOCK:
        pool = _SHARED.get("pool")
        if pool is not None and not pool.closed and pool.workers == workers:
            return pool
    if pool is not None:
        pool.close()
    new = CRFPool(workers)
    with _LOCK:
        _SHARED["pool"] = new
    return new


def shutdown_shared_pool() -> None:
    """Stop the shared pool's processes (a later call starts a new pool)."""
    with _LOCK:
        pool = _SHARED.pop("pool", None)
    if pool is not None:
        pool.close()


def check_workers(workers: Any, name: str = "workers") -> int | None:
    """``workers`` as given when it is ``None`` or an integer >= 0 (a whole float or numeric string
    is taken as its integer); otherwise a ValueError naming ``name`` and what is expected."""
    if workers is None:
        return None
    try:
        value = int(workers)
        valid = not isinstance(workers, bool) and value >= 0 and float(workers) == value
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{name} must be an integer >= 0 (CRF worker processes; 0 = in this process) or null "
                         f"(the run's threads.crf_workers), got {workers!r}")
    return value


def resolve_workers(workers: int | None, n_items: int) -> int:
    """Worker processes to use for ``n_items`` CRFs (0 means this process). ``None``: the run's
    thread plan (:func:`wsss_kit.engine.threads.current_plan`: a config's ``threads.crf_workers``,
    else one per CPU core shared out among the processes torchrun started on this machine, so that
    N ranks do not start N pools of one worker per core each)."""
    checked = check_workers(workers)
    workers = current_plan().crf_workers if checked is None else checked
    # Daemonic processes (e.g. DataLoader workers) may not start children.
    if workers <= 1 or n_items <= 1 or multiprocessing.current_process().daemon:
        return 0
    return min(workers, n_items)


def dense_crf_batch(
    images: Sequence[np.ndarray] | np.ndarray,
    probs: Sequence[np.ndarray] | np.ndarray,
    params: "str | CRFParams | dict[str, Any] | tuple | None" = "default",
    workers: int | None = None,
    min_prob: float = _dense_crf_module.DEFAULT_MIN_PROB,
    backend: str = "pydensecrf",
    device: Any = None,
) -> list[np.ndarray]:
    """:func:`~wsss_kit.crf.dense_crf.dense_crf` over many images, in parallel worker processes.

    pydensecrf holds the GIL, so threads do not help; the images are spread over a reusable
    pool of processes (see :func:`shared_pool`).

    Args:
        images: ``N`` images ``uint8 (H_i, W_i, 3)`` (a list, or an array ``(N, H, W, 3)``).
        probs: ``N`` arrays ``float (K_i, H_i, W_i)``.
        params: as for :func:`~wsss_kit.crf.dense_crf.dense_crf` (a name, mapping,
            ``CRFParams`` or a :data:`~wsss_kit.crf.dense_crf.Settings` tuple).
        workers: processes to use; ``None`` = one per available CPU core (at most ``N``);
            0 or 1 = run in this process.
        min_prob: as for :func:`~wsss_kit.crf.dense_crf.dense_crf`.
        backend: ``"pydensecrf"`` (the reference, in worker processes), ``"torch"`` (batched in this
            process on ``device``, :func:`~wsss_kit.crf.torch_crf.dense_crf_torch_batch`) or
            ``"auto"`` (:func:`~wsss_kit.crf.torch_crf.resolve_backend` for ``device``).
        device: where the torch backend runs (default CPU).

    Returns:
        ``N`` arrays ``float32 (K_i, H_i, W_i)`` in input order.

    Raises:
        ValueError: bad input, naming the image index; an unknown backend, listing the valid ones.
        RuntimeError: the CRF failed in a worker, naming the image index (cause chained).
    """
    settings = _dense_crf_module.crf_settings(params)
    if len(images) != len(probs):
        raise ValueError(f"dense_crf_batch got {len(images)} images but {len(probs)} probability maps")
    checked = [
        _dense_crf_module.check_crf_inputs(img, p, where=f"image {i}") for i, (img, p) in enumerate(zip(images, probs))
    ]
    if backend != "pydensecrf":
        from .torch_crf import dense_crf_torch_batch, resolve_backend

        if resolve_backend(backend, device if device is not None else "cpu") == "torch":
            return dense_crf_torch_batch([c[0] for c in checked], [c[1] for c in checked], settings, min_prob, device)
    if not checked:
        return []
    if any(p.shape[0] > 1 for _, p in checked):
        _dense_crf_module._import_densecrf()  # a clear ImportError here rather than from a worker
    n_workers = resolve_workers(workers, len(checked))
    if n_workers == 0:
        out = []
        for i, (img, p) in enumerate(checked):
            try:
                out.append(_dense_crf_module.crf_inference(img, p, settings, min_prob))
            except Exception as exc:
                raise RuntimeError(f"dense CRF failed on image {i} of {len(checked)}: {exc}") from exc
        return out
    return shared_pool(n_workers).map([c[0] for c in checked], [c[1] for c in checked], settings, min_prob)
