"""SQLite backend client: the embedded default, shared by processes through one file."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ..base import BackendClient, Bounds, ChangeEvent, ChangeFeed, TableMaintenance, WriteSet
from ..errors import RaceCondition
from ..sql import in_id_order, range_query
from ..table import TableReference
from . import events
from .schema import (
    CHANGES_TABLE,
    SUPPORT_TABLES,
    SQLRowCodec,
    create_table_sql,
    quote,
    table_name,
)
from .thread_connection import ThreadConnection

CHANGE_RETENTION_SECONDS = 600
PRUNE_INTERVAL_SECONDS = 60
IN_CHUNK = 500


def path_of_url(url: str) -> str:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    if urlparse(url).scheme != "sqlite" or not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (use sqlite:///relative.db or sqlite:////abs.db)")
    path = url[len("sqlite:///"):]
    if path in ("", ":memory:") or path.startswith(":memory:"):
        raise ValueError(
            "SQLite needs a database file (sqlite:///path/to/game.db): several connections "
            "and processes share it, which an in-memory database cannot do"
        )
    return os.path.abspath(path)


def _missing_table(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class SQLiteBackendClient(BackendClient):
    """The SQLite backend client: reads, ranges and atomic commits on one database file,
    through a writer and a reader connection each running in its own thread."""

    def __init__(self, url: str, is_servant: bool = False, **options: Any) -> None:
        self.url = url
        self.path = path_of_url(url)
        self.is_servant = is_servant
        self._codecs: dict[type, SQLRowCodec] = {}
        self._writer: ThreadConnection | None = None
        self._reader: ThreadConnection | None = None
        self._closed = False
        self._last_prune = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise ConnectionError(f"the SQLite backend {self.url} is closed")
        if self._writer is not None:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._writer = ThreadConnection(self.path, "writer")
        self._reader = ThreadConnection(self.path, "reader")

        def create_support(conn: sqlite3.Connection) -> None:
            for stmt in SUPPORT_TABLES:
                conn.execute(stmt)

        await self._writer.run(create_support)

    async def close(self) -> None:
        self._closed = True
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.close()

    def _conn(self, which: str) -> ThreadConnection:
        conn = self._writer if which == "writer" else self._reader
        if self._closed:
            raise ConnectionError(f"the SQLite backend {self.url} is closed")
        if conn is None:
            raise ConnectionError(f"the SQLite backend {self.url} is not open: await backend.open() first")
        return conn

    def codec(self, comp) -> SQLRowCodec:
        codec = self._codecs.get(comp)
        if codec is None:
            codec = self._codecs[comp] = SQLRowCodec(comp)
        return codec

    # -- reads ----------------------------------------------------------------------------

    async def _read(self, fn, *args):
        try:
            return await self._conn("reader").run(fn, *args)
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return None
            raise

    async def get(self, ref: TableReference, row_id: int) -> np.record | None:
        codec = self.codec(ref.comp_cls)
        sql = f"SELECT {codec.select_list} FROM {quote(table_name(ref))} WHERE id = ?"
        rows = await self._read(lambda c: c.execute(sql, (int(row_id),)).fetchall())
        return codec.decode_many(rows)[0] if rows else None

    async def get_many(self, ref: TableReference, row_ids: list[int]) -> list[np.record | None]:
        if not row_ids:
            return []
        codec = self.codec(ref.comp_cls)
        ids = [int(i) for i in row_ids]
        sql = (f"SELECT {codec.select_list} FROM {quote(table_name(ref))} "
               f"WHERE id IN (SELECT value FROM json_each(?))")
        rows = await self._read(lambda c: c.execute(sql, (json.dumps(ids),)).fetchall())
        return in_id_order(ids, codec.decode_many(rows or []))

    def _range_sql(self, ref, index, bounds: Bounds, limit, desc, columns) -> tuple[str, list]:
        codec = self.codec(ref.comp_cls)
        return range_query(quote(table_name(ref)), columns, quote(index), "id", bounds,
                           codec.value(index, bounds.low), codec.value(index, bounds.high), limit, desc,
                           lambda n: "?")

    async def range(self, ref, index, bounds: Bounds, limit, desc) -> np.recarray:
        codec = self.codec(ref.comp_cls)
        if bounds.empty or limit == 0:
            return codec.decode_many([])
        sql, params = self._range_sql(ref, index, bounds, limit, desc, codec.select_list)
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return codec.decode_many(rows or [])

    async def range_ids(self, ref, index, bounds: Bounds, limit, desc) -> list[int]:
        if bounds.empty or limit == 0:
            return []
        sql, params = self._range_sql(ref, index, bounds, limit, desc, "id")
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [r[0] for r in rows or []]

    async def find_unique(self, ref, values: list[tuple[str, Any]]) -> list[int | None]:
        if not values:
            return []
        codec = self.codec(ref.comp_cls)
        tname = quote(table_name(ref))
        queries = [(f"SELECT id FROM {tname} WHERE {quote(f)} = ? LIMIT 1", codec.value(f, v)) for f, v in values]

        def lookup(c: sqlite3.Connection) -> list[int | None]:
            out = []
            for sql, param in queries:
                hit = c.execute(sql, (param,)).fetchone()
                out.append(hit[0] if hit else None)
            return out

        found = await self._read(lookup)
        return found if found is not None else [None] * len(values)

    # -- commit -----------------------------------------------------------------------------

    def _apply(self, conn: sqlite3.Connection, writes: WriteSet, prune: bool) -> None:
        now = time.time()
        for tw in writes:
            ref, comp = tw.ref, tw.ref.comp_cls
            codec = self.codec(comp)
            tname = quote(table_name(ref))
            for start in range(0, len(tw.reads), IN_CHUNK):
                chunk = dict(tw.reads[start:start + IN_CHUNK])
                marks = ",".join("?" * len(chunk))
                found = dict(conn.execute(f"SELECT id, _version FROM {tname} WHERE id IN ({marks})", list(chunk)))
                for row_id, version in chunk.items():
                    if found.get(row_id) != version:
                        raise RaceCondition(
                            f"Version mismatch on {ref.comp_name} row {row_id}: read version {version}, "
                            f"now {found.get(row_id)} (changed by another transaction)"
                        )
            for row in tw.deletes:
                cur = conn.execute(f"DELETE FROM {tname} WHERE id = ? AND _version = ?", (int(row.id), int(row._version)))
                if cur.rowcount != 1:
                    raise RaceCondition(f"Version mismatch when deleting {ref.comp_name} row {int(row.id)}")
            for old, new, changed in tw.updates:
                sets = ", ".join(f"{quote(f)} = ?" for f in changed)
                params = codec.values(new, changed) + [int(new.id), int(old._version)]
                cur = conn.execute(
                    f"UPDATE {tname} SET {sets}, _version = _version + 1 WHERE id = ? AND _version = ?", params
                )
                if cur.rowcount != 1:
                    raise RaceCondition(f"Version mismatch when updating {ref.comp_name} row {int(new.id)}")
            if tw.inserts:
                names = [n for n in codec.names if n != "_version"]
                cols = ", ".join(quote(n) for n in names) + ", _version"
                marks = ", ".join("?" * len(names)) + ", 1"
                conn.executemany(
                    f"INSERT INTO {tname} ({cols}) VALUES ({marks})",
                    [codec.values(row, names) for row in tw.inserts],
                )
            if tw.is_dirty():
                channel = self.change_channel(ref)
                event = ChangeEvent(channel, tuple(tw.touched_rows()), tuple(tw.touched_indexes()))
                conn.execute(
                    f"INSERT INTO {CHANGES_TABLE} (channel, payload, created_at) VALUES (?, ?, ?)",
                    (channel, event.encode(), now),
                )
        if prune:
            conn.execute(f"DELETE FROM {CHANGES_TABLE} WHERE created_at < ?", (now - CHANGE_RETENTION_SECONDS,))

    def _commit_in_thread(self, conn: sqlite3.Connection, writes: WriteSet, prune: bool) -> None:
        for attempt in range(2):
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._apply(conn, writes, prune)
                conn.execute("COMMIT")
                return
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK")
                raise RaceCondition(f"UNIQUE constraint violation: {exc}") from exc
            except sqlite3.OperationalError as exc:
                conn.execute("ROLLBACK")
                if attempt == 0 and _missing_table(exc):
                    for tw in writes:  # first write to a table of a new cluster id
                        for stmt in create_table_sql(tw.ref):
                            conn.execute(stmt)
                    continue
                raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def commit(self, writes: WriteSet) -> None:
        if self.is_servant:
            raise RuntimeError("cannot commit on a read replica")
        if not writes:
            raise ValueError("nothing to commit")
        now = time.monotonic()
        prune = now - self._last_prune > PRUNE_INTERVAL_SECONDS
        if prune:
            self._last_prune = now
        await self._conn("writer").run(self._commit_in_thread, writes, prune)
        events.notify_local(self.path)

    # -- events and maintenance ---------------------------------------------------------------

    def change_channel(self, ref: TableReference) -> str:
        return f"{ref.instance_name}:{ref.comp_name}:{{CLU{ref.cluster_id}}}"

    def change_feed(self) -> ChangeFeed:
        self._conn("reader")
        return events.SQLiteChangeFeed(self.path)

    def maintenance(self) -> TableMaintenance:
        from .maint import SQLiteTableMaintenance

        return SQLiteTableMaintenance(self)
