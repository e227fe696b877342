"""The on-disk cache of POLE's synonym selections: one JSON file per dataset.

Layout (``version`` 1)::

    {
      "format": "wsss_pole.synonym_selection", "version": 1, "complete": true,
      "header": {
        "synonyms_sha256": "...",           # canonical-JSON SHA-256 of the candidate lists
        "candidates": {"aeroplane": ["aeroplane", "aircraft", "airplane", "plane"], ...},
        "template": "A photo of {}.",
        "class_names": ["aeroplane", ...],  # the dataset's, in order
        "dataset": {"class_names": [...], "num_images": 10582, "names_sha256": "..."},  # or "id"
        "clip": {"name": "ViT-B-32", "weights_sha256": "...", "mean": [...], "std": [...]},
        "selection": {"mask": "pixel_product", "resize": "clip", "image_size": [224, 224], "version": 1}
      },
      "info": {"synonyms_source": "...", "clip_source": "...", "cams": "...", "precision": "..."},
      "selections": {"2007_000032": {"aeroplane": "plane", "person": "human"}, ...}
    }

Every ``header`` field must match for a cache to be reused; ``info`` is for people only (moving
the weights file or the CAM folder does not invalidate a cache). The CAMs themselves are not
fingerprinted: after regenerating them, rebuild the cache (``rebuild=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from wsss_kit import DataError
from wsss_kit.atomic import write_text
from wsss_kit.clip import CLIPModel

from .synonym_table import canonical_sha256

__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "SelectionCacheError",
    "check_header",
    "clip_identity",
    "dataset_identity",
    "read_selection_cache",
    "write_selection_cache",
]

CACHE_FORMAT = "wsss_pole.synonym_selection"
CACHE_VERSION = 1


class SelectionCacheError(DataError):
    """A selection cache is unreadable or was built for another table, dataset or CLIP model."""


def write_selection_cache(path: str | os.PathLike[str], header: Mapping[str, Any],
                          selections: Mapping[str, Mapping[str, str]], *, complete: bool,
                          info: Mapping[str, Any] | None = None) -> Path:
    """Write a cache atomically (a reader never sees half a file; a crash keeps the old one).

    ``selections``: image id → {class name → selected word}.
    """
    doc = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "complete": bool(complete),
           "num_images": len(selections), "header": dict(header), "info": dict(info or {}),
           "selections": {str(k): dict(v) for k, v in selections.items()}}
    return write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def read_selection_cache(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the structure of a cache file.

    Returns:
        the document: ``header``, ``info``, ``complete`` and ``selections`` (image id → {class
        name → word}); every class is one of ``header["class_names"]`` and every word one of that
        class's ``header["candidates"]``.

    Raises:
        SelectionCacheError: missing, unparsable, another format/version, or inconsistent entries.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SelectionCacheError(f"selection cache {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SelectionCacheError(f"selection cache {path} is not valid JSON ({exc}); delete it or pass "
                                  f"rebuild=True") from None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SelectionCacheError(f"selection cache {path} is not a POLE selection cache (format {found!r}, "
                                  f"expected {CACHE_FORMAT!r})")
    if doc.get("version") != CACHE_VERSION:
        raise SelectionCacheError(f"selection cache {path} has version {doc.get('version')!r}; this wsss_pole "
                                  f"reads version {CACHE_VERSION}; pass rebuild=True to recompute it")
    header, selections = doc.get("header"), doc.get("selections")
    if not isinstance(header, dict) or not isinstance(selections, dict):
        raise SelectionCacheError(f"selection cache {path} lacks its 'header' or 'selections' object")
    candidates = header.get("candidates") or {}
    for image, chosen in selections.items():
        if not isinstance(chosen, dict):
            raise SelectionCacheError(f"selection cache {path}: image {image!r} maps to {chosen!r}, expected "
                                      f"{{class name: word}}")
        for cls, word in chosen.items():
            if cls not in candidates:
                raise SelectionCacheError(f"selection cache {path}: image {image!r} has a selection for class "
                                          f"{cls!r}, which is not one of the cache's classes")
            if word not in candidates[cls]:
                raise SelectionCacheError(f"selection cache {path}: image {image!r}, class {cls!r}: word {word!r} "
                                          f"is not one of its candidates {candidates[cls]}")
    doc.setdefault("info", {})
    doc["complete"] = bool(doc.get("complete", False))
    return doc


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(found: Any, expected: Any, prefix: str) -> list[str]:
    if isinstance(found, Mapping) and isinstance(expected, Mapping):
        out = []
        for key in sorted(set(found) | set(expected), key=str):
            out += _differences(found.get(key), expected.get(key), f"{prefix}.{key}")
        return out
    if found != expected:
        return [f"{prefix}: cache has {_short(found)}, now {_short(expected)}"]
    return []


def check_header(path: str | os.PathLike[str], found: Mapping[str, Any], expected: Mapping[str, Any],
                 fields: tuple[str, ...] | None = None) -> None:
    """Raise :class:`SelectionCacheError` naming every ``header`` field (or sub-field) that differs.

    ``fields`` limits the comparison (default: every field of ``expected``).
    """
    keys = fields if fields is not None else tuple(expected)
    diffs: list[str] = []
    for key in keys:
        if key == "candidates":
            continue  # reported through synonyms_sha256, per class below
        diffs += _differences(found.get(key), expected.get(key), key)
    if diffs and "synonyms_sha256" in keys:
        old, new = found.get("candidates") or {}, expected.get("candidates") or {}
        changed = [c for c in sorted(set(old) | set(new)) if old.get(c) != new.get(c)]
        if changed:
            diffs.append("candidate words differ for " + ", ".join(
                f"{c!r} (cache {old.get(c)}, now {new.get(c)})" for c in changed[:4])
                + (f" and {len(changed) - 4} more classes" if len(changed) > 4 else ""))
    if diffs:
        raise SelectionCacheError(
            f"selection cache {path} was built for other settings: " + "; ".join(diffs)
            + ". Pass rebuild=True to recompute it, or point cache= at another file")


def clip_identity(clip: CLIPModel) -> dict[str, Any]:
    """What identifies a CLIP model for a selection cache: architecture name, SHA-256 of its state
    dict (names, dtypes, shapes, values) and its input mean/std."""
    digest = hashlib.sha256()
    for key, value in sorted(clip.model.state_dict().items()):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{tensor.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return {"name": str(clip.name), "weights_sha256": digest.hexdigest(),
            "mean": [round(float(v), 8) for v in clip.mean.flatten()],
            "std": [round(float(v), 8) for v in clip.std.flatten()]}


def dataset_identity(dataset: Any, dataset_id: str | None = None) -> dict[str, Any]:
    """What identifies a dataset for a selection cache: its class names, and either ``dataset_id``
    or its number of images (plus the SHA-256 of its image ids where it lists them in ``names``)."""
    ident: dict[str, Any] = {"class_names": [str(n) for n in dataset.class_names]}
    if dataset_id is not None:
        ident["id"] = str(dataset_id)
        return ident
    ident["num_images"] = len(dataset)
    names = getattr(dataset, "names", None)
    if names is not None:
        ident["names_sha256"] = canonical_sha256([str(n) for n in names])
    return ident
