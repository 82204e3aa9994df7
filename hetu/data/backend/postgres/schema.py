"""How components map to PostgreSQL tables, and values to PostgreSQL values.

One table per component, instance and cluster id; one column per field. Names longer
than PostgreSQL's 63-byte identifier limit are shortened with an md5 suffix, so they
stay distinct instead of being silently truncated by the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..table import TableReference

MAX_IDENTIFIER_BYTES = 63
UINT64_OFFSET = 1 << 63  # uint64 values are stored shifted into bigint's range
META_TABLE = "_hetu_component_meta"
TABLES_TABLE = "_hetu_tables"  # every component table created, for drop_table
# Serialises DDL of all HeTu processes on one database (pg_advisory_xact_lock key).
DDL_LOCK_KEY = int.from_bytes(hashlib.md5(b"hetu:ddl").digest()[:8], "big", signed=True)

SUPPORT_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS {META_TABLE} (
        instance_name text NOT NULL, comp_name text NOT NULL, version text NOT NULL,
        json text NOT NULL, cluster_id integer NOT NULL, PRIMARY KEY (instance_name, comp_name))""",
    f"""CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (
        table_name text PRIMARY KEY, instance_name text NOT NULL, namespace text NOT NULL,
        comp_name text NOT NULL, cluster_id integer NOT NULL)""",
)


def short_name(name: str) -> str:
    """``name`` if it fits in an identifier, else a readable prefix plus an md5 suffix."""
    raw = name.encode("utf-8")
    if len(raw) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.md5(raw).hexdigest()[:10]
    return raw[: MAX_IDENTIFIER_BYTES - 11].decode("utf-8", errors="ignore") + "_" + digest


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier (inner double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def table_name(ref: TableReference) -> str:
    """``instance:namespace:Component:cluster`` (shortened past 63 bytes), like SQLite's."""
    comp = ref.comp_cls
    return short_name(f"{ref.instance_name}:{comp.namespace_}:{comp.name_}:{ref.cluster_id}")


def column_name(field: str) -> str:
    """The column name of a component field (shortened like table names past 63 bytes)."""
    return short_name(field)


def index_name(table: str, field: str) -> str:
    """The name of the index (or unique constraint) on ``field``; names are per schema."""
    return short_name(f"{table}:{field}")


def column_type(dt: np.dtype) -> str:
    """The SQL type holding every value of ``dt``, in the order NumPy compares them."""
    kind, size = dt.kind, dt.itemsize
    if kind == "b":
        return "boolean"
    if kind == "i":
        return {1: "smallint", 2: "smallint", 4: "integer"}.get(size, "bigint")
    if kind == "u":
        return {1: "smallint", 2: "integer"}.get(size, "bigint")  # uint64: offset bigint
    if kind == "f":
        return "real" if size <= 4 else "double precision"
    if kind == "U":
        return 'text COLLATE "C"'  # byte order of UTF-8 = code point order, like NumPy
    if kind == "S":
        return "bytea"
    raise TypeError(f"dtype {dt.str} cannot be stored in PostgreSQL")


def create_table_sql(ref: TableReference) -> list[str]:
    """DDL of the table of ``ref`` (idempotent)."""
    comp = ref.comp_cls
    tname = table_name(ref)
    cols = [f"{quote(column_name(n))} {column_type(comp.dtype_map_[n])} NOT NULL" for n in comp.dtypes.names]
    constraints = [f"CONSTRAINT {quote(index_name(tname, 'id'))} PRIMARY KEY ({quote(column_name('id'))})"]
    plain = []
    for field in sorted(comp.indexes_):
        if field == "id":
            continue
        if field in comp.uniques_:
            # deferred: a commit may move a unique value from one row to another
            constraints.append(
                f"CONSTRAINT {quote(index_name(tname, field))} UNIQUE ({quote(column_name(field))}) "
                f"DEFERRABLE INITIALLY DEFERRED"
            )
        else:
            plain.append(
                f"CREATE INDEX IF NOT EXISTS {quote(index_name(tname, field))} "
                f"ON {quote(tname)} ({quote(column_name(field))})"
            )
    return [f"CREATE TABLE IF NOT EXISTS {quote(tname)} ({', '.join(cols + constraints)})", *plain]


def unique_constraints(ref: TableReference) -> dict[str, str]:
    """Constraint name -> field, for naming the field of a unique violation."""
    tname = table_name(ref)
    return {index_name(tname, f): f for f in ref.comp_cls.uniques_}


def _to_sql(kind: str, where: str) -> Callable[[Any], Any]:
    if kind == "b":
        return bool
    if kind == "i":
        return int
    if kind == "f":
        return float
    if kind == "S":
        return bytes

    def text(value: Any) -> str:
        value = str(value)
        if "\x00" in value:
            raise ValueError(f"{where} contains a NUL character, which PostgreSQL text cannot store")
        return value

    return text


class PGRowCodec:
    """Rows of one component to query parameters and back."""

    def __init__(self, comp) -> None:
        self.comp = comp
        self.names: tuple[str, ...] = comp.dtypes.names
        dtypes = comp.dtype_map_
        self.offset = {n for n in self.names if dtypes[n].kind == "u" and dtypes[n].itemsize == 8}
        self._to = {n: _to_sql(dtypes[n].kind, f"{comp.name_}.{n}") for n in self.names}
        self.columns = {n: quote(column_name(n)) for n in self.names}
        self.select_list = ", ".join(self.columns[n] for n in self.names)

    def value(self, name: str, value: Any) -> Any:
        """A bound value for SQL, typed like the column."""
        if isinstance(value, np.generic):
            value = value.item()
        if name in self.offset:
            return int(value) - UINT64_OFFSET
        return self._to[name](value)

    def values(self, row: np.record, names) -> list:
        return [self.value(n, row[n]) for n in names]

    def decode_many(self, records: list) -> np.recarray:
        if not records:
            return np.recarray(0, dtype=self.comp.dtypes)
        if self.offset:
            shifted = [i for i, n in enumerate(self.names) if n in self.offset]
            rows = []
            for record in records:
                row = list(record)
                for i in shifted:
                    row[i] += UINT64_OFFSET
                rows.append(tuple(row))
        else:
            rows = [tuple(r) for r in records]
        return np.array(rows, dtype=self.comp.dtypes).view(np.recarray)
