"""Static checks of the core and the first-party plugins, run by the test suite (and so by CI).

- ruff (pycodestyle errors/warnings, pyflakes, import order; settings in ``[tool.ruff]`` of
  pyproject.toml) over ``wsss_kit/`` and ``plugins/``;
- mypy (settings and the checked packages in ``[tool.mypy]``) over ``wsss_kit`` and the plugin
  packages;
- every distribution installs its ``py.typed`` marker (PEP 561), so that type checkers read the
  installed packages' annotations.

The tools come with the ``test`` extras (``pip install -e .[test]``); a missing tool skips its check
with the reason. A failure prints the tool's own report.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUFF_PATHS = ("wsss_kit", "plugins")
"""What ruff checks (plugin tests included); its rules are in pyproject.toml."""

DISTRIBUTIONS = {  # distribution folder -> its package
    ".": "wsss_kit",
    "plugins/affinity": "wsss_affinity",
    "plugins/cams": "wsss_cams",
    "plugins/deeplab": "wsss_deeplab",
    "plugins/pole": "wsss_pole",
    "plugins/weakclip": "wsss_weakclip",
}


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed; it comes with the test extras: pip install -e '.[test]'")


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def test_ruff_is_clean() -> None:
    _require("ruff")
    proc = _run(["ruff", "check", "--no-fix", *RUFF_PATHS])
    assert proc.returncode == 0, "ruff found problems (ruff check --fix repairs import order):\n" + _report(proc)


def test_mypy_is_clean() -> None:
    _require("mypy")
    proc = _run(["mypy", "--config-file", "pyproject.toml"])
    assert proc.returncode == 0, "mypy found type errors:\n" + _report(proc)
    assert "Success: no issues found" in proc.stdout, _report(proc)


def test_the_checks_cover_every_package() -> None:
    """Every first-party package is in ruff's paths and mypy's files (a new plugin must be added)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    files = set(config["tool"]["mypy"]["files"])
    for folder, package in DISTRIBUTIONS.items():
        package_dir = (ROOT / folder / package).relative_to(ROOT).as_posix()
        assert package_dir in files, f"[tool.mypy] files lacks {package_dir}"
        assert any(package_dir == p or package_dir.startswith(p + "/") for p in RUFF_PATHS), package_dir
    plugins = {p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml")}
    assert plugins == {Path(f).name for f in DISTRIBUTIONS if f != "."}, (
        f"plugins/ holds distributions {sorted(plugins)}; add each one to DISTRIBUTIONS and [tool.mypy] files")


@pytest.mark.parametrize("folder", sorted(DISTRIBUTIONS))
def test_distribution_installs_py_typed(folder: str, tmp_path: Path) -> None:
    """Build and install the distribution (from a copy, so the checkout gets no build folders) and
    find its package's ``py.typed`` among the installed files."""
    package = DISTRIBUTIONS[folder]
    source = ROOT / folder
    assert (source / package / "py.typed").is_file(), f"{folder}/{package}/py.typed is missing"
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (source / name).is_file():
            shutil.copy2(source / name, copy / name)
    shutil.copytree(source / package, copy / package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    target = tmp_path / "site"
    proc = _run(["pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                 "--target", str(target), str(copy)], timeout=300)
    assert proc.returncode == 0, _report(proc)
    assert (target / package / "py.typed").is_file(), (
        f"the installed {package} has no py.typed: list it in [tool.setuptools.package-data] of "
        f"{folder}/pyproject.toml")
