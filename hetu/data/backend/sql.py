"""SQL shared by the SQL backends (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Bounds


def range_query(table: str, columns: str, col: str, id_col: str, bounds: Bounds, low: Any, high: Any,
                limit: int, desc: bool, placeholder: Callable[[int], str]) -> tuple[str, list]:
    """``SELECT columns FROM table`` for rows with ``col`` within ``bounds``, ordered by
    (``col``, id) and limited (``limit < 0``: all). ``low``/``high`` are the bounds as the
    column stores them; ``placeholder(n)`` writes the n-th parameter (``?`` or ``$n``)."""
    order = "DESC" if desc else "ASC"
    sql = (
        f"SELECT {columns} FROM {table} "
        f"WHERE {col} {'>=' if bounds.low_inclusive else '>'} {placeholder(1)} "
        f"AND {col} {'<=' if bounds.high_inclusive else '<'} {placeholder(2)} "
        f"ORDER BY {col} {order}, {id_col} {order}"
    )
    params = [low, high]
    if limit >= 0:
        sql += f" LIMIT {placeholder(3)}"
        params.append(int(limit))
    return sql, params


def in_id_order(row_ids: list[int], records: Any) -> list:
    """``records`` (in any order) as a list in the order of ``row_ids``, None for an id
    with no record (the result of ``get_many``)."""
    found = {int(r.id): r for r in records}
    return [found.get(i) for i in row_ids]
