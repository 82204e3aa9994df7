"""The identity map: every row a session read or wrote, with its state.

Rows handed to user code are always copies, so changing a row has no effect until it
is passed to ``update``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import TableWrites, WriteSet
from .table import TableReference


class RowState(enum.IntEnum):
    """What a session will do with a cached row at commit: nothing, insert, update or delete it."""
    CLEAN = 0
    INSERT = 1
    UPDATE = 2
    DELETE = 3


@dataclass
class CachedRow:
    """A row a session has read or written: its current value, the value read, and its state."""
    row: np.record  # current value in this session
    clean: np.record | None  # value as read from the database (None for inserts)
    state: RowState


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# np.record sends every attribute access through a Python-level __getattribute__; the
# engine's own handling of rows calls NumPy's C methods directly
copy_row = np.generic.copy
row_bytes = np.generic.tobytes
row_dtype = np.generic.dtype.__get__

_FIELD_SPANS: dict[np.dtype, tuple[tuple[str, int, int], ...]] = {}


def changed_fields(new: np.record, old: np.record, skip: str = "") -> tuple[str, ...]:
    """The fields (but ``skip``) whose stored bytes differ between two rows of one
    component, in dtype order. Compared as bytes, not as NumPy scalars: one
    ``tobytes`` per row instead of two scalar reads and a compare per field (a NaN
    that did not change is unchanged, and -0.0 replacing 0.0 is a change)."""
    a, b = row_bytes(new), row_bytes(old)
    if a == b:
        return ()
    dtype = row_dtype(new)
    spans = _FIELD_SPANS.get(dtype)
    if spans is None:
        fields = dtype.fields
        spans = _FIELD_SPANS[dtype] = tuple(
            (name, fields[name][1], fields[name][1] + fields[name][0].itemsize) for name in dtype.names
        )
    return tuple(name for name, start, end in spans if a[start:end] != b[start:end] and name != skip)


class IdentityMap:
    """Rows of one transaction, per table, in first-touch order."""

    def __init__(self) -> None:
        self._tables: dict[TableReference, dict[int, CachedRow]] = {}
        self._absent: set[tuple[TableReference, str, Any]] = set()
        # something was inserted, updated or deleted (perhaps back to what was read):
        # a transaction that only read skips building its write set
        self.changed = False

    # -- reading the cache ---------------------------------------------------------

    def rows(self, ref: TableReference) -> dict[int, CachedRow]:
        return self._tables.setdefault(ref, {})

    def lookup(self, ref: TableReference, row_id: int) -> CachedRow | None:
        return self._tables.get(ref, {}).get(int(row_id))

    def live_rows(self, ref: TableReference) -> Iterator[CachedRow]:
        """Cached rows of ``ref`` that are not deleted in this session."""
        for entry in self._tables.get(ref, {}).values():
            if entry.state != RowState.DELETE:
                yield entry

    def filter(self, ref: TableReference, **equals: Any) -> list[np.record]:
        """Copies of live cached rows whose fields equal every given value."""
        if not self._tables.get(ref):
            return []
        wanted = {k: _plain(v) for k, v in equals.items()}
        return [
            copy_row(e.row)
            for e in self.live_rows(ref)
            if all(_plain(e.row[k]) == v for k, v in wanted.items())
        ]

    def is_dirty(self) -> bool:
        return any(
            e.state != RowState.CLEAN for rows in self._tables.values() for e in rows.values()
        )

    # -- negative observations ----------------------------------------------------

    def mark_absent(self, ref: TableReference, field: str, value: Any) -> None:
        self._absent.add((ref, field, _plain(value)))

    def observed_absent(self, ref: TableReference, field: str, value: Any) -> bool:
        return (ref, field, _plain(value)) in self._absent

    # -- changing the cache ---------------------------------------------------------

    def add_clean(self, ref: TableReference, row: np.record) -> None:
        rows = self.rows(ref)
        row_id = int(row["id"])
        if row_id in rows:
            raise ValueError(f"{ref.comp_name} row {row_id} already exists in the cache")
        # one copy serves as both: neither is handed out (readers get copies) and
        # update() replaces ``row`` instead of changing it
        clean = copy_row(row)
        rows[row_id] = CachedRow(clean, clean, RowState.CLEAN)

    def add_insert(self, ref: TableReference, row: np.record) -> None:
        self.changed = True
        rows = self.rows(ref)
        row_id = int(row["id"])
        entry = rows.get(row_id)
        if entry is None:
            rows[row_id] = CachedRow(copy_row(row), None, RowState.INSERT)
        elif entry.state == RowState.DELETE:
            # deleted then inserted again with the same id: it is an update of the row
            new = copy_row(row)
            new["_version"] = entry.clean["_version"]
            entry.row, entry.state = new, RowState.UPDATE
        else:
            raise ValueError(f"{ref.comp_name} row {row_id} is already in this session")

    def update(self, ref: TableReference, row: np.record) -> None:
        entry = self.lookup(ref, row["id"])
        if entry is None or entry.state == RowState.DELETE:
            raise LookupError(
                f"cannot update {ref.comp_name} row {int(row['id'])}: row id not found in "
                f"this session (read it with get/range/upsert first) or already deleted"
            )
        self.changed = True
        entry.row = copy_row(row)
        if entry.state == RowState.CLEAN:
            entry.state = RowState.UPDATE

    def mark_deleted(self, ref: TableReference, row_id: int) -> None:
        entry = self.lookup(ref, row_id)
        if entry is None or entry.state == RowState.DELETE:
            raise LookupError(
                f"cannot delete {ref.comp_name} row {int(row_id)}: row not existing in "
                f"this session (not read first, or already deleted)"
            )
        self.changed = True
        if entry.state == RowState.INSERT:
            del self._tables[ref][int(row_id)]  # never reached the database
        else:
            entry.state = RowState.DELETE

    # -- the write set --------------------------------------------------------------

    def write_set(self) -> WriteSet:
        """What a commit must do, table by table in first-touch order."""
        writes: WriteSet = []
        for ref, rows in self._tables.items():
            tw = TableWrites(ref)
            for row_id, e in rows.items():
                if e.state == RowState.CLEAN:
                    tw.reads.append((row_id, int(e.clean["_version"])))
                elif e.state == RowState.INSERT:
                    tw.inserts.append(e.row)
                elif e.state == RowState.DELETE:
                    tw.deletes.append(e.clean)
                else:
                    changed = changed_fields(e.row, e.clean, skip="_version")
                    if changed:
                        tw.updates.append((e.clean, e.row, changed))
                    else:  # changed back to what was read: still a read
                        tw.reads.append((row_id, int(e.clean["_version"])))
            if tw.is_dirty() or tw.reads:
                writes.append(tw)
        return writes
