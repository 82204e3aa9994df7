"""Subscription shapes: what one worker keeps per distinct query, and its deltas.

Every subscription of a worker with the same component, index, bounds, limit and order
(or the same row, for ``sub get``) shares one *shape*. The shape holds the rows its
subscribers were last shown, so a change event is evaluated once per shape: the rows an
event names are read once for all shapes of the table, the shape decides which of them
enter, change or leave its window, and the delta is encoded once for every subscriber.
A range is read again only when its window must be refilled (a row left a full window)
or when changes may have been missed (a ``gap`` event), once per shape.

A row counts as changed when its stored bytes differ from the copy the shape holds, so
an event delivered twice, an event for a change the shape's last read already showed,
or a full refresh that finds nothing new pushes nothing.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import numpy as np

from .protocol import NIL, pack, pack_row

if TYPE_CHECKING:
    from ..data.backend.base import BackendClient, Bounds
    from ..data.backend.table import Table


class Change:
    """One row of a delta: its new value (None: deleted or left the window), with the
    MessagePack of its id and of its wire form, encoded once for every subscriber."""

    __slots__ = ("row_id", "row", "key", "payload")

    def __init__(self, row_id: int, row: np.record | None, payload: bytes) -> None:
        self.row_id = row_id
        self.row = row
        self.key = pack(row_id)
        self.payload = payload


def _same(a: np.record | None, b: np.record | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.tobytes() == b.tobytes()


class Shape:
    """The shared state of the subscriptions of one query."""

    def __init__(self, table: Table, client: BackendClient, key: tuple) -> None:
        self.table = table
        self.comp = table.comp_cls
        self.client = client
        self.key = key
        self.rls = bool(self.comp.is_rls())
        self.subscribers: dict[Any, None] = {}  # an ordered set
        self._payloads: dict[int, bytes] = {}

    def payload(self, row_id: int, row: np.record) -> bytes:
        """The wire form of a row of the window, encoded once."""
        data = self._payloads.get(row_id)
        if data is None:
            data = self._payloads[row_id] = pack_row(row)
        return data

    def _change(self, row_id: int, row: np.record | None) -> Change:
        self._payloads.pop(row_id, None)
        return Change(row_id, row, NIL if row is None else self.payload(row_id, row))

    def window(self) -> list[np.record]:
        """The rows the query holds now, in its order."""
        raise NotImplementedError

    def wanted(self, row_ids: set[int], indexes: set[str]) -> list[int]:
        """Which of the rows an event names this shape must see again."""
        raise NotImplementedError

    def apply(self, rows: dict[int, np.record | None]) -> list[Change] | None:
        """The delta for fresh reads of the wanted rows; None when the window must be
        read again (the shape is then as it was before)."""
        raise NotImplementedError

    async def reload(self) -> list[Change]:
        """Read the query again; the delta against what the shape held."""
        raise NotImplementedError


class RowShape(Shape):
    """``sub get``: one row by id."""

    def __init__(self, table: Table, client: BackendClient, row_id: int) -> None:
        super().__init__(table, client, ("get", row_id))
        self.row_id = row_id
        self.row: np.record | None = None

    def window(self) -> list[np.record]:
        return [] if self.row is None else [self.row]

    def wanted(self, row_ids: set[int], indexes: set[str]) -> list[int]:
        return [self.row_id] if self.row_id in row_ids else []

    def apply(self, rows: dict[int, np.record | None]) -> list[Change]:
        new = rows[self.row_id]
        if _same(self.row, new):
            return []
        self.row = new
        return [self._change(self.row_id, new)]

    def set_row(self, row: np.record | None) -> list[Change]:
        return self.apply({self.row_id: row})

    async def reload(self) -> list[Change]:
        return self.set_row(await self.client.get(self.table.ref, self.row_id))


class RangeShape(Shape):
    """``sub range``: the first ``limit`` rows of an index range, in order.

    The window is kept as a sorted list of (order key, id), ascending whatever the
    direction; its *tail* (where rows drop out of a full window) is the last entry for
    an ascending range and the first for a descending one. ``complete`` says the window
    holds every row within the bounds (its last read returned fewer than ``limit``).
    """

    def __init__(self, table: Table, client: BackendClient, index: str, bounds: Bounds,
                 limit: int, desc: bool) -> None:
        super().__init__(table, client, ("range", index, bounds, limit, desc))
        self.index, self.bounds, self.limit, self.desc = index, bounds, limit, desc
        self.rows: dict[int, np.record] = {}
        self._order: list[tuple[Any, int]] = []
        self._keys: dict[int, Any] = {}
        self.complete = True

    # -- the window -------------------------------------------------------------------------

    def window(self) -> list[np.record]:
        ids = [row_id for _, row_id in self._order]
        if self.desc:
            ids.reverse()
        return [self.rows[i] for i in ids]

    def _order_key(self, row: np.record, row_id: int) -> Any:
        return self.client.range_order_key(row[self.index].item(), row_id)

    def _in_bounds(self, row: np.record) -> bool:
        b = self.bounds
        if b.empty:
            return False
        value = row[self.index].item()
        try:
            above = value > b.low or (b.low_inclusive and value == b.low)
            below = value < b.high or (b.high_inclusive and value == b.high)
        except TypeError:
            return False
        return above and below

    def _before_tail(self, key: Any) -> bool:
        if not self._order:
            return False
        return key > self._order[0][0] if self.desc else key < self._order[-1][0]

    def _insert(self, row_id: int, row: np.record, key: Any) -> None:
        bisect.insort(self._order, (key, row_id))
        self._keys[row_id] = key
        self.rows[row_id] = row

    def _remove(self, row_id: int) -> np.record:
        key = self._keys.pop(row_id)
        pos = bisect.bisect_left(self._order, (key, row_id))
        del self._order[pos]
        return self.rows.pop(row_id)

    def _trim(self) -> list[tuple[int, np.record]]:
        """Drop the rows past ``limit`` off the tail."""
        trimmed = []
        while self.limit >= 0 and len(self._order) > self.limit:
            _, row_id = self._order.pop(0 if self.desc else -1)
            del self._keys[row_id]
            trimmed.append((row_id, self.rows.pop(row_id)))
            self.complete = False
        return trimmed

    def _reset(self, rows: list[tuple[int, np.record]], complete: bool) -> None:
        self.rows, self._keys = {}, {}
        for row_id, row in rows:
            self._keys[row_id] = self._order_key(row, row_id)
            self.rows[row_id] = row
        self._order = sorted((key, row_id) for row_id, key in self._keys.items())
        self.complete = complete

    # -- deltas ---------------------------------------------------------------------------------

    def wanted(self, row_ids: set[int], indexes: set[str]) -> list[int]:
        if self.limit == 0 or self.bounds.empty:
            return []
        if self.index in indexes:  # rows may enter, move or leave
            return list(row_ids)
        return [i for i in row_ids if i in self.rows]  # only values of its rows changed

    def apply(self, rows: dict[int, np.record | None]) -> list[Change] | None:
        before = {row_id: (self._remove(row_id) if row_id in self.rows else None) for row_id in rows}
        for row_id, row in rows.items():
            if row is not None and self._in_bounds(row):
                key = self._order_key(row, row_id)
                if self.complete or self._before_tail(key):
                    self._insert(row_id, row, key)
        was_complete = self.complete
        trimmed = self._trim()
        if not self.complete and 0 <= len(self._order) < self.limit:
            # a row left a full window: what follows it is unknown until read again
            self._restore(rows, before, trimmed, was_complete)
            return None
        changes = []
        for row_id, old in before.items():
            new = self.rows.get(row_id)
            if not _same(old, new):
                changes.append(self._change(row_id, new))
        for row_id, _ in trimmed:
            if row_id not in before:
                changes.append(self._change(row_id, None))
        return changes

    def _restore(self, rows, before, trimmed, was_complete) -> None:
        """Undo :meth:`apply`: back to the window as it was before the batch."""
        for row_id in rows:
            if row_id in self.rows:
                self._remove(row_id)
        for row_id, row in trimmed:
            if row_id not in before:  # a row of the window pushed out by a new one
                self._insert(row_id, row, self._order_key(row, row_id))
        for row_id, row in before.items():
            if row is not None:
                self._insert(row_id, row, self._order_key(row, row_id))
        self.complete = was_complete

    async def reload(self) -> list[Change]:
        fresh = await self.client.range(self.table.ref, self.index, self.bounds, self.limit, self.desc)
        old = self.rows
        self._reset([(int(r.id), r) for r in fresh], self.limit < 0 or len(fresh) < self.limit)
        changes = [self._change(row_id, None) for row_id in old if row_id not in self.rows]
        for row_id, row in self.rows.items():
            if not _same(old.get(row_id), row):
                changes.append(self._change(row_id, row))
        return changes
