"""Change events on SQLite: a change table polled cheaply through ``PRAGMA data_version``.

Commits write one row per changed table into ``_hetu_changes``. A feed polls
``PRAGMA data_version`` (which changes when another connection commits) every couple of
milliseconds and reads the new rows; commits made in the same process wake it at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref

from ..base import ChangeEvent, ChangeFeed
from .schema import CHANGES_TABLE
from .thread_connection import ThreadConnection

POLL_SECONDS = 0.002
IDLE_SECONDS = 0.25
BATCH = 512

_local_feeds: dict[str, weakref.WeakSet] = {}
_registry_lock = threading.Lock()


def notify_local(path: str) -> None:
    """Wake the feeds of this process reading ``path`` (called after a local commit)."""
    with _registry_lock:
        feeds = list(_local_feeds.get(path, ()))
    for feed in feeds:
        feed.wake()


class SQLiteChangeFeed(ChangeFeed):
    """Change events of one SQLite file: polls the change table when ``data_version`` moves,
    and wakes at once on commits made in this process."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn = ThreadConnection(path, "feed")
        self._channels: set[str] = set()
        self._cursor: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        with _registry_lock:
            _local_feeds.setdefault(path, weakref.WeakSet()).add(self)

    def wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wakeup.set)

    async def subscribe(self, channel: str) -> None:
        if self._closed:
            raise ConnectionError("the change feed is closed")
        if self._cursor is None:
            self._cursor = await self._conn.run(
                lambda c: c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {CHANGES_TABLE}").fetchone()[0]
            )
        self._channels.add(channel)
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._poll(), name="hetu-sqlite-change-feed")

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    @staticmethod
    def _read(c: sqlite3.Connection, cursor: int) -> list:
        return c.execute(
            f"SELECT id, channel, payload FROM {CHANGES_TABLE} WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, BATCH),
        ).fetchall()

    @staticmethod
    def _version(c: sqlite3.Connection) -> int:
        return c.execute("PRAGMA data_version").fetchone()[0]

    async def _poll(self) -> None:
        seen_version = None
        while not self._closed:
            version = await self._conn.run(self._version)
            if version != seen_version or self._wakeup.is_set():
                self._wakeup.clear()
                rows = await self._conn.run(self._read, self._cursor)
                for row_id, channel, payload in rows:
                    self._cursor = row_id
                    if channel in self._channels:
                        self._queue.put_nowait(ChangeEvent.decode(channel, payload))
                if len(rows) == BATCH:
                    continue  # more to read
                seen_version = version
            wait = POLL_SECONDS if self._channels else IDLE_SECONDS
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_task()
        self._conn.close()
        with _registry_lock:
            feeds = _local_feeds.get(self.path)
            if feeds is not None:
                feeds.discard(self)
