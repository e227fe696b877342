"""Every Markdown file the code points a reader to exists in this repository.

Read from the source (nothing imported): the docstrings and comments of every Python file of the core,
the plugins, the benchmarks, the examples and the tests, and the other string literals outside the
tests (messages and notes users read, e.g. "Model card: docs/embedded_models.md"). A path such as
``docs/methods.md`` or ``plugins/pole/README.md`` must exist, relative to the repository root; names
of files that live outside it (``ARCHITECTURE.md``, ``METHODS.md``, ``../shared/...``) are refused.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("wsss_kit", "plugins", "benchmarks", "examples", "tests")

REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|plugins|benchmarks|wsss_kit|examples|tests)/[\w./-]*?\.md)\b")
"""A repository-relative Markdown path."""
OUTSIDE = re.compile(r"\b(ARCHITECTURE\.md|METHODS\.md|STYLE\.md)\b|\.\./shared\b")
"""Files of the project's planning folder, which the repository does not have."""


def python_files() -> list[Path]:
    files = []
    for root in ROOTS:
        files += [p for p in sorted((REPO / root).rglob("*.py"))
                  if not any(part in (".venv", "build", "__pycache__") or part.endswith(".egg-info")
                             for part in p.relative_to(REPO).parts)]
    return files


def texts(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of each docstring and comment of ``path`` (and, outside tests/, each string)."""
    source = path.read_text(encoding="utf-8")
    out: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    tree = ast.parse(source)
    in_tests = path.relative_to(REPO).parts[0] == "tests" or "tests" in path.relative_to(REPO).parts[:-1]
    for node in ast.walk(tree):
        if in_tests:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    out.append((getattr(node, "lineno", 1), doc))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def references(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, path named, exists)`` for each Markdown path ``path`` names, and each outside name (never exists)."""
    found = []
    for line, text in texts(path):
        for m in REPO_PATH.finditer(text):
            found.append((line, m.group(1), (REPO / m.group(1)).is_file()))
        for m in OUTSIDE.finditer(text):
            found.append((line, m.group(0), False))
    return found


def test_the_scan_finds_the_references_it_must() -> None:
    src = REPO / "wsss_kit" / "interfaces.py"
    assert ("docs/architecture.md", True) in [(p, ok) for _, p, ok in references(src)]
    released = REPO / "wsss_kit" / "weights" / "released.py"
    assert any(p == "docs/embedded_models.md" and ok for _, p, ok in references(released))


def test_refused_and_missing_names_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = REPO / "wsss_kit" / "_doc_reference_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: (
        '"""See ARCHITECTURE.md and docs/nowhere.md."""\n# ../shared/METHODS.md\nX = "docs/methods.md"\n'
        if self == fake else Path.read_bytes(self).decode(encoding or "utf-8")))
    refs = references(fake)
    assert ("ARCHITECTURE.md", False) in [(p, ok) for _, p, ok in refs]
    assert ("docs/nowhere.md", False) in [(p, ok) for _, p, ok in refs]
    assert ("../shared", False) in [(p, ok) for _, p, ok in refs]
    assert ("METHODS.md", False) in [(p, ok) for _, p, ok in refs]
    assert ("docs/methods.md", True) in [(p, ok) for _, p, ok in refs]


def test_every_markdown_path_named_in_the_code_exists() -> None:
    bad = [f"{path.relative_to(REPO)}:{line}: {name}" for path in python_files() if path != Path(__file__).resolve()
           for line, name, ok in references(path) if not ok]  # this file names the refused files to refuse them
    assert not bad, "docstrings/comments/messages name Markdown files this repository does not have " \
                    "(point them at docs/*.md):\n" + "\n".join(bad)


def test_the_architecture_page_names_files_that_exist() -> None:
    """docs/architecture.md answers "where to change what" with file names: each must exist."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:wsss_kit|plugins|benchmarks|docs|tests)/[\w./-]+)`", text))
    assert len(named) > 20
    missing = sorted(p for p in named if "<" not in p and not (REPO / p.rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_the_docs_name_no_file_outside_the_repository() -> None:
    pages = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"] + sorted((REPO / "plugins").glob("*/README.md"))
    bad = [f"{p.relative_to(REPO)}:{i}: {m.group(0)}" for p in pages
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) for m in OUTSIDE.finditer(line)]
    assert not bad, "Markdown pages name files the repository does not have:\n" + "\n".join(bad)
