"""Commands written in the repository's docs and config headers, found and split into words.

:func:`collect_commands` finds them in one file, :func:`all_commands` in every file that
``tests/test_doc_commands.py`` checks (its docstring says which and how); :func:`argv_of` maps the
docs' placeholder paths (``/data``, ``/path/to``, ``<...>``) into the test's folder and splits a
command with :func:`shlex.split`.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PREFIXES = ("wsss ", "wsss-pole-select ", "python -m benchmarks ", "python -m wsss_pole.cli")
"""What a command line starts with (after a comment's ``#``, a list marker, ``$`` or ``VAR=value``)."""
_ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")
_TWO_VALUES = re.compile(r"--set\s+(?:'[^']*'|\"[^\"]*\"|[^\s'\"]+=\S*)\s+([A-Za-z_][\w-]*(?:\.[\w-]+)+=)")
_INLINE = re.compile(r"`([^`]+)`")
_LIST_MARK = re.compile(r"^(?:\d+\.|[-*])\s+")
_SET_PAIR = re.compile(r"--set\s+('[^']*'|\"[^\"]*\"|[^\s'\"]+)")
SHELL_CONTROL = ("&", "&&", ";", "|", "||", ">", ">>", "2>&1")
"""A command's words end at the first of these (``wsss cam ... &`` in a shell loop)."""
PLACEHOLDER_DIR = "placeholder"
"""Where the docs' placeholder paths land, relative to the folder the checks run in."""


@dataclasses.dataclass(frozen=True)
class DocCommand:
    """One command found in a file: ``text`` as written (continuations joined)."""

    file: str
    line: int
    text: str
    kind: str = "command"
    """``"command"``; ``"name"`` (inline code of a program and a sub-command, ``wsss cam``: the
    sub-command must exist); ``"synopsis"`` (usage line); ``"overrides"`` (``--set`` line of a config
    header); ``"two-values"`` (``--set a=1 b=2``: always a failure)."""

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}" + (":--set" if self.kind == "two-values" else "")



def benchmark_configs() -> list[Path]:
    """The configs under ``benchmarks/``, not the copies runs write under ``benchmarks/results/``."""
    results = REPO / "benchmarks" / "results"
    return sorted(p for p in (REPO / "benchmarks").rglob("*.yaml") if results not in p.parents)

def doc_files() -> list[Path]:
    """Every file whose commands are checked."""
    files = benchmark_configs() + sorted((REPO / "wsss_kit" / "configs").glob("*.yaml"))
    files += [REPO / "README.md", REPO / "benchmarks" / "README.md"]
    files += sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "plugins").glob("*/README.md"))
    files += sorted((REPO / "examples").rglob("*.md"))
    return [f for f in files if f.is_file()]


def _command_start(text: str) -> str | None:
    """``text`` from the command on, when it is a command line (after a prompt and env assignments)."""
    text = _LIST_MARK.sub("", text.strip())
    if text.startswith("$ "):
        text = text[2:].lstrip()
    text = _ENV.sub("", text)
    return text if text.startswith(PREFIXES) else None


def _is_synopsis(text: str) -> bool:
    return any(mark in text for mark in ("[", "|", " / ", "...")) or "<" in text and "CONFIG" in text


def _join(lines: list[tuple[int, str]], i: int) -> tuple[str, int]:
    """The command at ``lines[i]`` joined over trailing backslashes; returns (text, index after it)."""
    text = lines[i][1].rstrip()
    j = i + 1
    while text.endswith("\\") and j < len(lines):
        text = text[:-1].rstrip() + " " + lines[j][1].strip()
        j += 1
    return text.rstrip("\\").strip(), j


def collect_commands(path: Path, text: str | None = None) -> list[DocCommand]:
    """The commands written in ``path`` (a YAML config or a markdown file); ``text`` replaces its content."""
    rel = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    raw = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    if path.suffix == ".yaml":
        lines = [(n, line.strip()[1:]) for n, line in enumerate(raw, 1) if line.strip().startswith("#")]
        code = [True] * len(lines)
    else:
        lines, code, fenced = [], [], False
        for n, line in enumerate(raw, 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            lines.append((n, line))
            code.append(fenced or line[:1].isspace())  # indented: a code block (or a list item's)
    found: list[DocCommand] = []
    i = 0
    while i < len(lines):
        n, line = lines[i]
        for match in _TWO_VALUES.finditer(line):
            found.append(DocCommand(rel, n, match.group(0), "two-values"))
        start = _command_start(line) if code[i] else None
        if start is not None:
            joined, j = _join(lines, i)
            found.append(DocCommand(rel, n, _command_start(joined) or start))
            i = j
            continue
        if path.suffix == ".yaml" and line.strip().startswith("--set "):
            joined, j = _join(lines, i)
            found.append(DocCommand(rel, n, joined, "overrides"))
            i = j
            continue
        for span in _INLINE.findall(line.replace("\\|", "|")):
            start = _command_start(span)
            if start is not None:
                kind = "synopsis" if _is_synopsis(start) else "name" if len(start.split()) <= 2 else "command"
                found.append(DocCommand(rel, n, start, kind))
        i += 1
    return found


def all_commands() -> list[DocCommand]:
    """The commands of every checked file, in file order."""
    return [c for f in doc_files() for c in collect_commands(f)]


# ----------------------------------------------------------------------------------------- words
def map_placeholders(text: str) -> str:
    """Map the docs' placeholder paths into the workspace (relative paths: the tests run there)."""
    text = re.sub(r"<[^<>]*>", PLACEHOLDER_DIR + "/given", text)
    text = re.sub(r"(?<![\w./])/data/(VOCdevkit|coco)(?=[/\s'\"}),;]|$)", r"data/\1", text)
    text = re.sub(r"(?<![\w./])/data/?(?=[\s'\"]|$)", "data", text)  # the folder that holds VOCdevkit/ and coco/
    return re.sub(r"(?<![\w./])/(?:data|path)(?=[/\s'\"}),;]|$)/?", PLACEHOLDER_DIR + "/", text)


def synopsis_variants(text: str) -> list[str]:
    """A usage line as the commands it stands for: ``[...]`` groups and ``...`` dropped, ``a / b``
    alternatives of the sub-command expanded."""
    text = re.sub(r"\[[^\[\]]*\]", " ", text).replace("...", " ")
    text = re.sub(r"\s+", " ", text).strip()
    if " / " not in text:
        return [text]
    head, *alternatives = text.split(" / ")
    prefix, first = head.rsplit(" ", 1)
    last_word, _, rest = alternatives[-1].partition(" ")
    words = [first, *alternatives[:-1], last_word]
    return [f"{prefix} {w} {rest}".strip() for w in words]


def argv_of(command: DocCommand, text: str | None = None) -> list[str]:
    """The words of a command with the placeholder paths mapped."""
    words = shlex.split(map_placeholders(command.text if text is None else text), comments=True)
    ends = [i for i, w in enumerate(words) if w in SHELL_CONTROL]
    return words[: ends[0]] if ends else words


def set_pairs(command: DocCommand) -> list[str]:
    """``["--set", "k=v", ...]`` of a header line of overrides that may go on in prose
    (``--set refiner.preset=table5_n2 (or --set refiner.n_context=2).``)."""
    pairs = [v.rstrip(").,;") for v in _SET_PAIR.findall(map_placeholders(command.text))]
    return [w for v in pairs for w in ("--set", shlex.split(v)[0])]
