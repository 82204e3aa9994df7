"""Live subscriptions: the rows a subscription covers, kept current by the server's pushes.

A :class:`LiveRow` (``client.get``) holds one row, a :class:`LiveRange` (``client.range``)
the rows of an index range. Each push is turned into :class:`Change` events (insert,
update, delete), delivered to callbacks and to every ``async for`` over the subscription::

    messages = await client.range("ChatMessage", "id", 0, 2**63 - 1, limit=100)
    messages.on_insert(lambda row: print(row["text"]))
    async for change in messages:
        print(change.kind, change.id, change.row)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger("HeTu.client")

Row = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One row entering, changing in or leaving a subscription."""

    kind: str  # "insert", "update" or "delete"
    id: int
    row: Row | None  # the row now (None when deleted)
    old: Row | None  # the row before (None when inserted)


class LiveSubscription:
    """Base of :class:`LiveRow` and :class:`LiveRange`."""

    def __init__(self, owner: Any, request: list, component: str, component_class: type | None) -> None:
        self._owner = owner  # the client or session that can unsubscribe it
        self.request = request  # the `sub` frame, sent again when a session reconnects
        self.component = component
        self.component_class = component_class
        self.sub_id: str | None = None
        self.closed = False
        self._callbacks: dict[str, list[Callable]] = {"insert": [], "update": [], "delete": []}
        self._queues: list[asyncio.Queue] = []
        self._tasks: set[asyncio.Task] = set()

    # -- for users ---------------------------------------------------------------------

    def on_insert(self, callback: Callable[[Row], Any]) -> Callable:
        """Call ``callback(row)`` for every row that enters (usable as a decorator)."""
        self._callbacks["insert"].append(callback)
        return callback

    def on_update(self, callback: Callable[[Row, Row], Any]) -> Callable:
        """Call ``callback(row, old)`` for every row that changes."""
        self._callbacks["update"].append(callback)
        return callback

    def on_delete(self, callback: Callable[[Row], Any]) -> Callable:
        """Call ``callback(old)`` for every row that is deleted, leaves or becomes unreadable."""
        self._callbacks["delete"].append(callback)
        return callback

    async def __aiter__(self) -> AsyncIterator[Change]:
        """Every change from now on, until the subscription ends."""
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.append(queue)
        try:
            while not (self.closed and queue.empty()):
                change = await queue.get()
                if change is None:
                    return
                yield change
        finally:
            self._queues.remove(queue)

    async def unsubscribe(self) -> None:
        """Stop receiving pushes (``unsub``); iterations over the subscription end."""
        await self._owner._unsubscribe(self)

    def rows_list(self) -> list[Row]:
        raise NotImplementedError

    def recarray(self) -> np.recarray:
        """The current rows as a NumPy record array (typed as the component when the
        subscription was made with the component class)."""
        rows = self.rows_list()
        cls = self.component_class
        if cls is not None:
            array = cls.new_rows(len(rows))
            for i, row in enumerate(rows):
                for name, value in row.items():
                    if name in cls.dtype_map_:
                        array[i][name] = value
            return array
        if not rows:
            return np.rec.array(np.zeros(0, dtype=[("id", "<i8")]))
        names = list(rows[0])
        return np.rec.fromrecords([tuple(r.get(n) for n in names) for r in rows], names=names)

    # -- for the client ----------------------------------------------------------------

    def _apply(self, delta: dict) -> None:
        raise NotImplementedError

    def _replace(self, data: Any) -> None:
        """Take a fresh initial result (after a reconnect), emitting the differences."""
        raise NotImplementedError

    def _emit(self, change: Change) -> None:
        args = {"insert": (change.row,), "update": (change.row, change.old), "delete": (change.old,)}
        for callback in self._callbacks[change.kind]:
            try:
                result = callback(*args[change.kind])
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:
                logger.exception("%s callback of %s failed", change.kind, self.sub_id)
        for queue in self._queues:
            queue.put_nowait(change)

    def _callback_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("callback of %s failed", self.sub_id, exc_info=task.exception())

    def _end(self) -> None:
        self.closed = True
        for queue in self._queues:
            queue.put_nowait(None)


class LiveRow(LiveSubscription):
    """One row (``client.get``); ``row`` is ``None`` once it is deleted or unreadable."""

    def __init__(self, owner: Any, request: list, component: str, component_class: type | None,
                 row: Row | None) -> None:
        super().__init__(owner, request, component, component_class)
        self.row = row

    def rows_list(self) -> list[Row]:
        return [] if self.row is None else [self.row]

    def _set(self, row_id: int, row: Row | None) -> None:
        old = self.row
        if row is None:
            if old is not None:
                self.row = None
                self._emit(Change("delete", row_id, None, old))
        elif old is None:
            self.row = row
            self._emit(Change("insert", row_id, row, None))
        elif row != old:
            self.row = row
            self._emit(Change("update", row_id, row, old))

    def _apply(self, delta: dict) -> None:
        for row_id, row in delta.items():
            self._set(int(row_id), row)

    def _replace(self, data: Row | None) -> None:
        if data is None:
            if self.row is not None:
                self._set(int(self.row["id"]), None)
        else:
            self._set(int(data["id"]), data)

    def __repr__(self) -> str:
        return f"<LiveRow {self.sub_id} {self.row!r:.80}>"


class LiveRange(LiveSubscription):
    """The rows of an index range (``client.range``): ``rows`` maps row id → row."""

    def __init__(self, owner: Any, request: list, component: str, component_class: type | None,
                 index: str, desc: bool, rows: list[Row]) -> None:
        super().__init__(owner, request, component, component_class)
        self.index = index
        self.desc = desc
        self.rows: dict[int, Row] = {int(r["id"]): r for r in rows}

    def __len__(self) -> int:
        return len(self.rows)

    def rows_list(self) -> list[Row]:
        """The rows in index order (as the server orders them)."""
        key = self.index if self.index != "id" else None
        rows = sorted(self.rows.values(), key=lambda r: (r.get(key), r["id"]) if key else r["id"])
        return rows[::-1] if self.desc else rows

    def _apply(self, delta: dict) -> None:
        for row_id, row in delta.items():
            row_id = int(row_id)
            old = self.rows.get(row_id)
            if row is None:
                if old is not None:  # nil for an unknown id is ignored
                    del self.rows[row_id]
                    self._emit(Change("delete", row_id, None, old))
            else:
                self.rows[row_id] = row
                if old is None:
                    self._emit(Change("insert", row_id, row, None))
                elif row != old:
                    self._emit(Change("update", row_id, row, old))

    def _replace(self, data: list[Row] | None) -> None:
        fresh = {int(r["id"]): r for r in data or []}
        delta: dict[int, Row | None] = {row_id: None for row_id in self.rows if row_id not in fresh}
        delta.update(fresh)
        self._apply(delta)

    def __repr__(self) -> str:
        return f"<LiveRange {self.sub_id} {len(self.rows)} rows>"
