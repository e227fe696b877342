"""Atomic file writes: a reader never sees a half-written file, and a crash leaves the old one.

Every writer in wsss_kit goes through :func:`atomic_path`: write to a temporary file
``.<name>.<8 random characters>.tmp`` in the same folder, flush it to disk, give it the mode a
plain ``open(target, "w")`` would (``0o666 & ~umask`` for a new file, the old mode when it
replaces one), then ``os.replace`` it onto the target. A process killed mid-write leaves its
temporary file behind; :func:`remove_stale_temps` removes such leftovers (and nothing else).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

__all__ = ["TEMP_PATTERN", "atomic_path", "current_umask", "remove_stale_temps", "write_bytes", "write_text"]

TEMP_PATTERN = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
"""Full-match pattern of the temporary names :func:`atomic_path` creates (``tempfile.mkstemp`` with
prefix ``.<target name>.`` and suffix ``.tmp`` adds 8 characters of ``[a-z0-9_]``)."""

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """This process's umask, read without changing it where the OS allows (Linux
    ``/proc/self/status``); elsewhere set and restored at once under a lock."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """The permission bits ``open(target, "w")`` would leave: the existing file's, else 0o666 & ~umask."""
    try:
        st = target.stat()
    except OSError:
        return 0o666 & ~current_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    On an exception the temporary file is removed and ``target`` is left untouched::

        with atomic_path("out/model.pt") as tmp:
            torch.save(state, tmp)

    The new ``target`` gets the permission bits a plain ``open(target, "w")`` would give it
    (``tempfile.mkstemp`` creates its file private, ``0o600``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically (UTF-8) and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def remove_stale_temps(folder: str | os.PathLike[str], recursive: bool = True,
                       min_age: float = 0.0) -> list[Path]:
    """Remove the temporary files that interrupted :func:`atomic_path` writes left in ``folder``.

    Only regular files whose whole name matches :data:`TEMP_PATTERN` (``.<name>.<8 of
    [a-z0-9_]>.tmp``) are removed, so no user file is touched; symbolic links are neither removed
    nor followed. Call it when no other process is writing into ``folder`` (e.g. at the start of
    a run), or pass ``min_age`` (seconds since the last modification) to spare recent files.

    Args:
        folder: where to look; a missing folder is not an error.
        recursive: also look in sub-folders.
        min_age: remove only files last modified at least this many seconds ago.

    Returns:
        The removed files. Files that cannot be removed (e.g. a read-only folder) are skipped.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    now = time.time()
    removed: list[Path] = []
    walker = os.walk(root)  # unreadable sub-folders are skipped; symlinked folders not followed
    for dirpath, _dirs, names in (walker if recursive else itertools.islice(walker, 1)):
        for name in names:
            if not TEMP_PATTERN.fullmatch(name):
                continue
            path = Path(dirpath) / name
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < min_age:
                    continue
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed
