"""Tests for wsss_kit.atomic: atomic replace, the user's umask, and removal of stale temp files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from wsss_kit.atomic import TEMP_PATTERN, atomic_path, current_umask, remove_stale_temps, write_bytes, write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set a umask for the test and restore the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def test_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_new_files_get_the_umask_mode_like_open(tmp_path: Path, umask, mask: int) -> None:
    umask(mask)
    assert current_umask() == mask
    with open(tmp_path / "plain.txt", "w") as fh:  # what a normal open() gives
        fh.write("x")
    write_text(tmp_path / "atomic.txt", "x")
    with atomic_path(tmp_path / "deep" / "model.pt") as tmp:
        tmp.write_bytes(b"x")
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert mode(tmp_path / "deep" / "model.pt") == 0o666 & ~mask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_replacing_a_file_keeps_its_mode(tmp_path: Path, umask) -> None:
    umask(0o022)
    target = tmp_path / "a.txt"
    write_text(target, "one")
    os.chmod(target, 0o640)
    write_text(target, "two")
    assert mode(target) == 0o640 and target.read_text() == "two"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_umask_read_in_another_process(tmp_path: Path) -> None:
    """The umask a process inherits is what its files get (current_umask reads, never changes it)."""
    code = textwrap.dedent(f"""
        import os, stat
        from wsss_kit.atomic import current_umask, write_text
        assert current_umask() == 0o027, oct(current_umask())
        write_text({str(tmp_path / 'f.txt')!r}, 'x')
        assert current_umask() == 0o027
    """)
    subprocess.run([sys.executable, "-c", f"import os; os.umask(0o027); exec({code!r})"], check=True)
    assert mode(tmp_path / "f.txt") == 0o640


def test_temp_names_match_the_pattern(tmp_path: Path) -> None:
    seen = []
    for name in ["model.pt", "a.b.c", ".hidden", "x y.png", "checkpoint.pt"]:
        with atomic_path(tmp_path / name) as tmp:
            seen.append(tmp.name)
            assert TEMP_PATTERN.fullmatch(tmp.name), tmp.name
            assert TEMP_PATTERN.fullmatch(tmp.name)["target"] == name
            tmp.write_bytes(b"")
    # and the same for names made by tempfile directly with the writer's prefix/suffix
    for _ in range(20):
        fd, name = tempfile.mkstemp(prefix=".checkpoint.pt.", suffix=".tmp", dir=tmp_path)
        os.close(fd)
        assert TEMP_PATTERN.fullmatch(Path(name).name)


def test_remove_stale_temps_removes_only_leftovers(tmp_path: Path) -> None:
    stale = [tmp_path / ".checkpoint.pt.ab_3x9zq.tmp", tmp_path / "cams" / ".2007_000032.npz.k2j4h5g6.tmp"]
    keep = [
        tmp_path / "checkpoint.pt",
        tmp_path / "notes.tmp",                       # no leading dot
        tmp_path / ".checkpoint.pt.tmp",              # no random part
        tmp_path / ".checkpoint.pt.ABCDEFGH.tmp",     # upper case: mkstemp never makes it
        tmp_path / ".checkpoint.pt.abcdefg.tmp",      # 7 characters
        tmp_path / ".checkpoint.pt.abcdefghi.tmp",    # 9 characters
        tmp_path / ".checkpoint.pt.abcdefgh.tmp.bak",
        tmp_path / "cams" / "2007_000032.npz",
    ]
    for p in stale + keep:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()  # a folder with a temp-like name is not a file
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep) and (tmp_path / ".dir.abcdefgh.tmp").is_dir()
    assert remove_stale_temps(tmp_path) == []
    assert remove_stale_temps(tmp_path / "missing") == []


def test_remove_stale_temps_not_recursive_and_min_age(tmp_path: Path) -> None:
    top, deep = tmp_path / ".a.txt.aaaaaaaa.tmp", tmp_path / "sub" / ".b.txt.bbbbbbbb.tmp"
    deep.parent.mkdir()
    top.write_bytes(b"x")
    deep.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, recursive=False, min_age=3600) == []
    old = time.time() - 7200
    os.utime(top, (old, old))
    assert remove_stale_temps(tmp_path, recursive=False, min_age=3600) == [top]
    assert deep.exists()
    assert remove_stale_temps(tmp_path) == [deep]


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_remove_stale_temps_leaves_symlinks_and_their_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ".data.bin.abcdefgh.tmp"
    victim.write_bytes(b"precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".link.pt.abcdefgh.tmp").symlink_to(victim)
    (run / "linked_dir").symlink_to(outside, target_is_directory=True)
    assert remove_stale_temps(run) == []
    assert victim.read_bytes() == b"precious" and (run / ".link.pt.abcdefgh.tmp").is_symlink()


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_killed_write_leaves_a_temp_that_is_then_removed(tmp_path: Path) -> None:
    """A process killed inside ``atomic_path`` leaves its temp file; the next run's cleanup removes it."""
    code = textwrap.dedent(f"""
        import os, signal
        from wsss_kit.atomic import atomic_path
        with atomic_path({str(tmp_path / 'checkpoint.pt')!r}) as tmp:
            tmp.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode != 0
    left = [p for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".checkpoint.pt.") and left[0].name.endswith(".tmp")
    assert remove_stale_temps(tmp_path) == left
    assert list(tmp_path.iterdir()) == []
