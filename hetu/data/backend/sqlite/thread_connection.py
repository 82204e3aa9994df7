"""A sqlite3 connection owned by one thread; async callers run whole functions there."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BUSY_TIMEOUT_MS = 15_000


def connect(path: str) -> sqlite3.Connection:
    """Open ``path`` for autocommit use from any thread, with a busy timeout and WAL journaling."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching a new file to WAL takes an exclusive lock without waiting for the busy
    # timeout: processes opening the same new file at once must retry it themselves.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(random.uniform(0.01, 0.05))
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
