"""The papers' tables as data: ``TABLES`` (id → :class:`Table`), :func:`get_table`, :func:`list_tables`.

``python -m benchmarks reproduce TABLE`` runs a table's runs and scores its rows; ``docs/reproduce.md``
says what each table needs (data, weights, time) and what moves its numbers.
"""

from __future__ import annotations

from .baselines import BASELINE_TABLES
from .embedded import EMBEDDED_TABLES
from .pole import POLE_TABLES
from .schema import Claim, Input, RegionFraction, Row, Run, Table
from .weakclip import WEAKCLIP_TABLES

__all__ = ["TABLES", "Claim", "Input", "RegionFraction", "Row", "Run", "Table", "UnknownTableError", "get_table", "list_tables"]


class UnknownTableError(KeyError):
    """A table id that :data:`TABLES` does not have (a KeyError whose text reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _index(tables: tuple[Table, ...]) -> dict[str, Table]:
    ids = [t.id for t in tables]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"table ids defined twice: {', '.join(duplicates)}")
    return {t.id: t for t in sorted(tables, key=lambda t: t.id)}


TABLES: dict[str, Table] = _index(WEAKCLIP_TABLES + POLE_TABLES + BASELINE_TABLES + EMBEDDED_TABLES)
"""Every table, by id, sorted by id."""


def list_tables() -> list[str]:
    """The table ids, sorted."""
    return list(TABLES)


def get_table(table_id: str) -> Table:
    """The table ``table_id``.

    Raises:
        UnknownTableError: an unknown id (a KeyError); the message lists the ids and the closest match.
    """
    try:
        return TABLES[table_id]
    except (KeyError, TypeError):
        from wsss_kit.registry import did_you_mean

        raise UnknownTableError(f"unknown table {table_id!r}{did_you_mean(str(table_id), TABLES)}; "
                                f"available: {', '.join(TABLES)}") from None
