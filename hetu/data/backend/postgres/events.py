"""Change events on PostgreSQL: NOTIFY inside the commit, LISTEN on one connection per feed.

A commit sends ``pg_notify(channel, payload)`` for every table it changed; PostgreSQL
delivers notifications only when (and if) the transaction commits, in commit order.
A payload must stay under 8000 bytes, so a large event is sent as several smaller
events whose union is the original (subscribers treat events as a set of touched rows
and indexes, so nothing is lost by the split).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from ..base import ChangeEvent, ChangeFeed

MAX_PAYLOAD_BYTES = 7999  # NOTIFY refuses payloads of 8000 bytes or more
CLOSE_TIMEOUT = 5.0


def split_event(event: ChangeEvent, limit: int = MAX_PAYLOAD_BYTES) -> list[ChangeEvent]:
    """``event`` as events whose payloads fit in ``limit`` bytes (usually just itself)."""
    if len(event.encode()) <= limit:
        return [event]
    parts: list[ChangeEvent] = []
    rows: list[int] = []
    indexes: list[str] = []
    size = 1  # the "|" separator

    def flush() -> None:
        nonlocal rows, indexes, size
        if rows or indexes:
            parts.append(ChangeEvent(event.channel, tuple(rows), tuple(indexes)))
        rows, indexes, size = [], [], 1

    for row_id in event.row_ids:
        cost = len(str(row_id)) + 1
        if size + cost > limit:
            flush()
        rows.append(row_id)
        size += cost
    for index in event.indexes:
        cost = len(index.encode("utf-8")) + 1
        if size + cost > limit:
            flush()
        indexes.append(index)
        size += cost
    flush()
    return parts


def notifications(channel: str, row_ids: tuple[int, ...], indexes: tuple[str, ...]) -> list[str]:
    """The NOTIFY payloads announcing one table's change."""
    return [part.encode().decode() for part in split_event(ChangeEvent(channel, row_ids, indexes))]


class PostgresChangeFeed(ChangeFeed):
    """LISTENs on one dedicated connection, opened with the first subscription.

    ``subscribe`` returns once the server confirmed the LISTEN, so every commit after
    that point is delivered. A lost connection surfaces as ``ConnectionError`` from
    :meth:`get`.
    """

    def __init__(self, dsn: str, connect_options: dict[str, Any]) -> None:
        super().__init__()
        self._dsn = dsn
        self._connect_options = connect_options
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one command at a time on the connection
        self._channels: set[str] = set()
        self._lost = asyncio.Event()

    def _on_notify(self, conn, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(ChangeEvent.decode(channel, payload))

    def _on_terminate(self, conn) -> None:
        self._lost.set()

    async def _watch(self) -> None:
        await self._lost.wait()
        if not self._closed:
            raise ConnectionError("the PostgreSQL connection of the change feed was lost")

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await asyncpg.connect(self._dsn, **self._connect_options)
            conn.add_termination_listener(self._on_terminate)
            self._conn = conn
            self._task = asyncio.create_task(self._watch(), name="hetu-postgres-change-feed")
        return self._conn

    async def subscribe(self, channel: str) -> None:
        if self._closed:
            raise ConnectionError("the change feed is closed")
        async with self._lock:
            if channel in self._channels:
                return
            conn = await self._connection()
            await conn.add_listener(channel, self._on_notify)
            self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if self._closed or channel not in self._channels:
                return
            self._channels.discard(channel)
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.remove_listener(channel, self._on_notify)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_task()
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                try:
                    await conn.close(timeout=CLOSE_TIMEOUT)
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn.terminate()
