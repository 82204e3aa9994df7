"""A sqlite3 connection owned by one thread; async callers run whole functions there."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BUSY_TIMEOUT_MS = 15_000


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class ThreadConnection:
    """``await run(fn, *args)`` calls ``fn(conn, *args)`` in the connection's thread.

    A whole transaction is one function, so it costs one thread hop; usable from any
    event loop.
    """

    def __init__(self, path: str, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hetu-sqlite-{name}")
        self._conn: sqlite3.Connection | None = self._executor.submit(connect, path).result()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._conn is None:
            raise ConnectionError("the SQLite backend is closed")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn, *args)

    def close(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        self._executor.submit(conn.close).result()
        self._executor.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        return self._conn is None
