"""Why a cell of the stage-wise results table is empty ("-"), in words for ``results.md``.

Read from the manifest's stage records only (no dataset is opened): a stage that scored a split
without ground truth records ``{"miou": None}`` for it, a skipped stage records its reason, and the
retrained head is scored on the held-out split alone.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["empty_cell_notes"]

SPLIT_COLUMNS = {"train": "train mIoU", "eval": "held-out mIoU"}


def _reason(stage: str, record: Mapping[str, Any], split: str) -> str | None:
    """Why ``record`` (the manifest record of ``stage``) has no mIoU for ``split``; ``None`` if it has one."""
    if not record or not record.get("complete"):
        return "the stage has not run (yet)"
    if record.get("skipped"):
        return f"the stage had nothing to do ({record.get('reason', 'skipped')})"
    scores = record.get(split)
    if scores is None:
        if stage == "eval" and split == "train":
            return "the retrained head predicts and is scored on the held-out split (data.eval) only"
        return f"the stage did not score data.{split}"
    if scores.get("miou") is None:
        return (f"data.{split} has no ground truth (every mask pixel is 255, ignore), so nothing on it is "
                "scored; give the dataset masks to score this split")
    return None


def empty_cell_notes(stages: Mapping[str, Any], rows: Sequence[tuple[str, str]]) -> list[str]:
    """One Markdown list item per reason, naming the cells it empties.

    Args:
        stages: the manifest's stage records (``{stage: record}``).
        rows: ``(stage, row title)`` of the table, in its order.

    Returns:
        e.g. ``["- held-out mIoU, every row: data.eval has no ground truth ..."]`` (empty when every
        cell holds a number).
    """
    by_reason: dict[str, dict[str, list[str]]] = {}  # reason -> row title -> its empty columns
    for stage, title in rows:
        for split, column in SPLIT_COLUMNS.items():
            reason = _reason(stage, stages.get(stage) or {}, split)
            if reason is not None:
                by_reason.setdefault(reason, {}).setdefault(title, []).append(column)
    notes = []
    columns = list(SPLIT_COLUMNS.values())
    for reason, per_title in by_reason.items():
        whole = [c for c in columns if sum(c in cols for cols in per_title.values()) == len(rows)]
        parts = [f"{column}, every row" for column in whole]
        rest = {title: [c for c in cols if c not in whole] for title, cols in per_title.items()}
        parts += [f"{title} (both columns)" for title, cols in rest.items() if len(cols) == len(columns)]
        for column in columns:
            titles = [title for title, cols in rest.items() if cols == [column]]
            if titles:
                parts.append(f"{column} of {_and(titles)}")
        notes.append(f"- {'; '.join(parts)}: {reason}.")
    return notes


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
