"""How components map to SQLite tables, and values to SQLite values."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..table import TableReference

MAX_NAME_BYTES = 63
UINT64_OFFSET = 1 << 63  # uint64 values are stored shifted into the signed range
META_TABLE = "_hetu_component_meta"
CHANGES_TABLE = "_hetu_changes"

SUPPORT_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {META_TABLE} (
        instance_name TEXT NOT NULL, comp_name TEXT NOT NULL, version TEXT NOT NULL,
        json TEXT NOT NULL, cluster_id INTEGER NOT NULL, PRIMARY KEY (instance_name, comp_name))""",
    f"""CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, payload BLOB NOT NULL,
        created_at REAL NOT NULL)""",
)


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (inner double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def table_name(ref: TableReference) -> str:
    """``instance:namespace:Component:cluster``, shortened with an md5 suffix past 63 bytes."""
    comp = ref.comp_cls
    name = f"{ref.instance_name}:{comp.namespace_}:{comp.name_}:{ref.cluster_id}"
    raw = name.encode("utf-8")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.md5(raw).hexdigest()[:10]
    return raw[: MAX_NAME_BYTES - 11].decode("utf-8", errors="ignore") + "_" + digest


def column_type(dt: np.dtype) -> str:
    """The SQLite storage type of a field's NumPy dtype."""
    return {"i": "INTEGER", "u": "INTEGER", "f": "REAL", "U": "TEXT", "S": "BLOB"}[dt.kind]


def create_table_sql(ref: TableReference) -> list[str]:
    """The statements creating ``ref``'s table and its indexes (unique ones as unique indexes),
    each a no-op when it exists."""
    comp = ref.comp_cls
    tname = table_name(ref)
    cols = []
    for name in comp.dtypes.names:
        if name == "id":
            cols.append('"id" INTEGER PRIMARY KEY')
        else:
            cols.append(f"{quote(name)} {column_type(comp.dtype_map_[name])} NOT NULL")
    stmts = [f"CREATE TABLE IF NOT EXISTS {quote(tname)} ({', '.join(cols)})"]
    for field in sorted(comp.indexes_):
        if field == "id":
            continue
        unique = "UNIQUE " if field in comp.uniques_ else ""
        index = quote(f"{tname}:{field}")
        stmts.append(f"CREATE {unique}INDEX IF NOT EXISTS {index} ON {quote(tname)} ({quote(field)})")
    return stmts


def _to_sql(kind: str) -> Callable[[Any], Any]:
    if kind == "i":
        return int
    if kind == "u":
        return lambda v: int(v) - UINT64_OFFSET
    if kind == "f":
        return float
    if kind == "U":
        return str
    return bytes


def _from_sql(kind: str) -> Callable[[Any], Any]:
    if kind == "u":
        return lambda v: v + UINT64_OFFSET
    return lambda v: v


class SQLRowCodec:
    """Rows of one component to SQL parameters and back."""

    def __init__(self, comp) -> None:
        self.comp = comp
        self.names = comp.dtypes.names
        self.kinds = {n: comp.dtype_map_[n].kind for n in self.names}
        self._to = {n: _to_sql(k) for n, k in self.kinds.items()}
        self._from = [_from_sql(self.kinds[n]) for n in self.names]
        self.select_list = ", ".join(quote(n) for n in self.names)

    def value(self, name: str, value: Any) -> Any:
        """A bound value for SQL (typed like the column; NaN refused)."""
        if isinstance(value, np.generic):
            value = value.item()
        out = self._to[name](value)
        if isinstance(out, float) and math.isnan(out):
            raise ValueError(
                f"{self.comp.name_}.{name} is NaN, which SQLite cannot store (it becomes NULL)"
            )
        return out

    def values(self, row: np.record, names) -> list:
        return [self.value(n, row[n]) for n in names]

    def decode_many(self, rows: list[tuple]) -> np.recarray:
        if not rows:
            return np.recarray(0, dtype=self.comp.dtypes)
        if any(k == "u" for k in self.kinds.values()):
            rows = [tuple(conv(v) for conv, v in zip(self._from, r)) for r in rows]
        return np.array(rows, dtype=self.comp.dtypes).view(np.recarray)
