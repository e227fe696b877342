"""Synonym tables for POLE's class-token selection: reading, validation and fingerprints.

A synonym table maps a class to ``m`` words that may replace its name in the prompt. POLE's
table for PASCAL VOC (the paper's supplementary Table S1, ``m = 3``, from ChatGPT) ships as
``wsss_pole/data/synonyms_voc.json`` and is loaded with ``load_synonyms("voc")``.

File formats (any dataset, any ``m``; ``m`` may differ between classes):

* JSON or YAML: a mapping ``class → [synonym, ...]``, or an object whose ``"synonyms"`` key holds
  that mapping (other keys, e.g. ``"source"``, are notes and are ignored)::

      {"cat": ["feline", "kitty", "tomcat"], "dog": ["canine", "puppy", "hound"]}

* CSV (``.csv``) or TSV (``.tsv``/``.txt``): one row per class, ``class,synonym 1,synonym 2,...``;
  an optional header row whose first cell is ``class``; trailing empty cells are ignored::

      class,synonym 1,synonym 2,synonym 3
      cat,feline,kitty,tomcat

A table is keyed by class *words*: the word put in the prompt for the class, which is the
dataset's class name or its override (VOC: ``person`` → ``player``, ``diningtable`` → ``dining
table``, see :data:`VOC_CLASS_WORDS`). A table keyed by the dataset's own names works too.

Rules (checked when a table is read, and against a dataset's classes when it is used): every
class of the dataset has an entry; no list is empty; no entry is blank; no word appears twice in
one class's candidates (class word + synonyms, compared case-insensitively). The same word
under two classes is allowed (Table S1 lists "bike" for bicycle and motorbike).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wsss_kit import DataError

__all__ = [
    "SHIPPED_TABLES",
    "VOC_CLASS_WORDS",
    "SynonymTable",
    "SynonymTableError",
    "canonical_sha256",
    "load_synonyms",
]

VOC_CLASS_WORDS: dict[str, str] = {
    "person": "player",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
}
"""CLIMS's words for the VOC classes whose ``VOC_CLASSES`` name differs from the prompt word
(the rest are used as they are). Table S1 is keyed by these words."""

SHIPPED_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "voc": ("synonyms_voc.json", VOC_CLASS_WORDS),
}
"""Tables shipped with the plugin: name → (file in ``wsss_pole/data``, default class words)."""


class SynonymTableError(DataError):
    """A synonym table is malformed or does not cover a dataset's classes; names the file and class."""


def canonical_sha256(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no spaces, UTF-8)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _word_key(word: str) -> str:
    return " ".join(word.split()).casefold()


@dataclass(frozen=True)
class SynonymTable:
    """A validated synonym table: ``entries[key]`` is the tuple of synonyms of class (word) ``key``.

    Build it with :func:`load_synonyms`. ``source`` names where it came from (for messages);
    ``class_words`` holds the default class-name overrides that go with it (VOC's for ``"voc"``).
    """

    entries: Mapping[str, tuple[str, ...]]
    source: str
    class_words: Mapping[str, str]

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any], source: str = "<mapping>",
                     class_words: Mapping[str, str] | None = None) -> SynonymTable:
        """Validate ``mapping`` (class → list of synonyms) and build a table."""
        if not isinstance(mapping, Mapping):
            raise SynonymTableError(f"synonym table {source}: expected a mapping class → list of synonyms, "
                                    f"got {type(mapping).__name__}")
        if not mapping:
            raise SynonymTableError(f"synonym table {source} is empty")
        entries: dict[str, tuple[str, ...]] = {}
        seen: dict[str, str] = {}
        for raw_key, value in mapping.items():
            if not isinstance(raw_key, str) or not raw_key.strip():
                raise SynonymTableError(f"synonym table {source}: class names must be non-blank strings, "
                                        f"got {raw_key!r}")
            key = raw_key.strip()
            if _word_key(key) in seen:
                raise SynonymTableError(f"synonym table {source}: class {key!r} appears twice "
                                        f"(also as {seen[_word_key(key)]!r})")
            seen[_word_key(key)] = key
            entries[key] = _check_synonyms(value, key, source)
        return cls(entries, source, dict(class_words or {}))

    def __len__(self) -> int:
        return len(self.entries)

    def entry_for(self, class_name: str, class_word: str) -> tuple[str, ...] | None:
        """The synonyms of a class, looked up by its class word first, then by its name."""
        for key in (class_word, class_name):
            if key in self.entries:
                return self.entries[key]
        return None

    def candidates(self, class_names: Sequence[str], class_words: Mapping[str, str] | None = None,
                   num_synonyms: int | None = None) -> list[list[str]]:
        """Candidate words per class: ``[class word, synonym 1, ..., synonym m]``.

        Args:
            class_names: the dataset's class names, in order.
            class_words: overrides of the word used for a class (default: this table's
                ``class_words``); the class word is looked up in the table, then the class name.
            num_synonyms: keep the first ``m`` synonyms of each class (POLE's Fig. 3 ablation);
                ``None`` keeps them all.

        Raises:
            SynonymTableError: a class has no entry (all such classes are named, with the closest
                keys), fewer than ``num_synonyms`` synonyms, or a synonym equal to its class word.
        """
        words = dict(self.class_words if class_words is None else class_words)
        if num_synonyms is not None and (isinstance(num_synonyms, bool) or not isinstance(num_synonyms, int)
                                         or num_synonyms < 1):
            raise ValueError(f"num_synonyms must be a positive integer or None, got {num_synonyms!r} "
                             f"(for the class name alone use the 'template' prompt strategy)")
        missing, out = [], []
        for name in class_names:
            word = str(words.get(name, name))
            synonyms = self.entry_for(name, word)
            if synonyms is None:
                missing.append((name, word))
                continue
            if num_synonyms is not None:
                if len(synonyms) < num_synonyms:
                    raise SynonymTableError(f"synonym table {self.source}: class {name!r} has {len(synonyms)} "
                                            f"synonyms, but num_synonyms={num_synonyms} asks for {num_synonyms}")
                synonyms = synonyms[:num_synonyms]
            clash = [s for s in synonyms if _word_key(s) == _word_key(word)]
            if clash:
                raise SynonymTableError(f"synonym table {self.source}: class {name!r} lists its own class word "
                                        f"{word!r} as a synonym ({clash[0]!r}); each candidate must be distinct")
            out.append([word, *synonyms])
        if missing:
            keys = list(self.entries)
            parts = []
            for name, word in missing:
                looked = repr(word) if word == name else f"{word!r} or {name!r}"
                close = difflib.get_close_matches(word, keys, n=2, cutoff=0.5)
                hint = f" (closest: {', '.join(map(repr, close))})" if close else ""
                parts.append(f"{name!r} (looked for {looked}){hint}")
            raise SynonymTableError(
                f"synonym table {self.source} has no entry for class{'es' if len(parts) > 1 else ''} "
                f"{'; '.join(parts)}. Its classes: {', '.join(keys)}. Add the missing rows, or map dataset "
                f"names to table keys with class_name_overrides (e.g. {{'person': 'player'}})")
        return out


def _check_synonyms(value: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SynonymTableError(f"synonym table {source}: class {key!r} must map to a list of synonyms, "
                                f"got {type(value).__name__} {value!r}")
    if len(value) == 0:
        raise SynonymTableError(f"synonym table {source}: class {key!r} has an empty synonym list; "
                                f"POLE needs at least one synonym per class")
    words: list[str] = []
    seen: dict[str, int] = {}
    for i, word in enumerate(value):
        if not isinstance(word, str):
            raise SynonymTableError(f"synonym table {source}: class {key!r}, synonym {i + 1} is "
                                    f"{type(word).__name__} {word!r}, expected a string")
        if not word.strip():
            raise SynonymTableError(f"synonym table {source}: class {key!r}, synonym {i + 1} is blank")
        k = _word_key(word)
        if k in seen:
            raise SynonymTableError(f"synonym table {source}: class {key!r} lists {word.strip()!r} twice "
                                    f"(synonyms {seen[k] + 1} and {i + 1})")
        seen[k] = i
        words.append(word.strip())
    return tuple(words)


def _reject_duplicate_keys(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise SynonymTableError(f"synonym table {source}: class {key!r} appears twice")
            out[key] = value
        return out

    return hook


def _read_rows(path: Path, delimiter: str) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    first = True
    with open(path, newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            cells = [c.strip() for c in row]
            while cells and not cells[-1]:
                cells.pop()
            if not cells:
                continue
            if first:
                first = False
                if cells[0].casefold() in ("class", "class name", "classname"):
                    continue  # header row
            name, synonyms = cells[0], cells[1:]
            if not name:
                raise SynonymTableError(f"synonym table {path}, line {line_no}: the class cell is blank")
            if name in table:
                raise SynonymTableError(f"synonym table {path}: class {name!r} appears twice "
                                        f"(lines {lines[name]} and {line_no})")
            if not synonyms:
                raise SynonymTableError(f"synonym table {path}, line {line_no}: class {name!r} has an empty "
                                        f"synonym list; POLE needs at least one synonym per class")
            for i, s in enumerate(synonyms):
                if not s:
                    raise SynonymTableError(f"synonym table {path}, line {line_no}: class {name!r}, "
                                            f"synonym {i + 1} is blank")
            table[name], lines[name] = synonyms, line_no
    return table


def _read_file(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".csv", ".tsv", ".txt"):
        raise SynonymTableError(f"synonym table {path}: unknown format {suffix or '(no suffix)'!r}; "
                                f"use .json, .yaml, .csv or .tsv")
    try:
        if suffix == ".csv":
            return _read_rows(path, ",")
        if suffix in (".tsv", ".txt"):
            return _read_rows(path, "\t")
        with open(path, encoding="utf-8") as fh:
            if suffix == ".json":
                data = json.load(fh, object_pairs_hook=_reject_duplicate_keys(str(path)))
            else:
                import yaml

                try:
                    data = yaml.safe_load(fh)
                except yaml.YAMLError as exc:
                    raise SynonymTableError(f"synonym table {path} could not be parsed: {exc}") from None
    except FileNotFoundError:
        raise SynonymTableError(f"synonym table {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise SynonymTableError(f"synonym table {path} could not be parsed: {exc}") from None
    if isinstance(data, Mapping) and isinstance(data.get("synonyms"), Mapping):
        data = data["synonyms"]
    return data


def load_synonyms(synonyms: str | os.PathLike[str] | Mapping[str, Sequence[str]] | SynonymTable = "voc"
                  ) -> SynonymTable:
    """Read and validate a synonym table.

    Args:
        synonyms: ``"voc"`` (POLE's Table S1, shipped), a path to a ``.json`` / ``.yaml`` /
            ``.csv`` / ``.tsv`` file (see the module docstring), a mapping ``class → [synonyms]``,
            or a :class:`SynonymTable` (returned as it is).

    Raises:
        SynonymTableError: missing or unparsable file, empty list, blank or duplicated entry (the
            message names the file and the class).
    """
    if isinstance(synonyms, SynonymTable):
        return synonyms
    if isinstance(synonyms, Mapping):
        return SynonymTable.from_mapping(synonyms)
    if isinstance(synonyms, str) and synonyms in SHIPPED_TABLES:
        filename, words = SHIPPED_TABLES[synonyms]
        resource = resources.files("wsss_pole") / "data" / filename
        with resources.as_file(resource) as path:
            data = _read_file(Path(path))
        return SynonymTable.from_mapping(data, source=f"{synonyms!r} (wsss_pole/data/{filename})", class_words=words)
    if not isinstance(synonyms, (str, os.PathLike)):
        raise TypeError(f"synonyms must be 'voc', a file path or a mapping class → list of synonyms, "
                        f"got {type(synonyms).__name__}")
    path = Path(synonyms).expanduser()
    if not path.exists():
        shipped = ", ".join(map(repr, SHIPPED_TABLES))
        raise SynonymTableError(f"synonym table {path} does not exist (shipped tables: {shipped})")
    return SynonymTable.from_mapping(_read_file(path), source=str(path))
