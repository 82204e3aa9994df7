"""PostgreSQL backend client: asyncpg pool, row-locking commits, NOTIFY change events."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any
from urllib.parse import urlparse

import asyncpg
import numpy as np

from ..base import BackendClient, Bounds, ChangeFeed, TableMaintenance, WriteSet
from ..errors import RaceCondition
from ..sql import in_id_order, range_query
from ..table import TableReference
from . import events
from .commit import Commit
from .schema import (
    DDL_LOCK_KEY,
    SUPPORT_TABLES,
    TABLES_TABLE,
    PGRowCodec,
    create_table_sql,
    index_name,
    quote,
    short_name,
    table_name,
    unique_constraints,
)

SCHEMES = ("postgresql", "postgres")
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CLOSE_TIMEOUT = 10.0
COMMIT_ATTEMPTS = 3  # a missing table or a stale prepared statement is fixed, then retried


def check_url(url: str) -> str:
    """``url`` itself when it names PostgreSQL; a ``ValueError`` saying the expected form otherwise."""
    if urlparse(url).scheme.lower() not in SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: {url!r} (use postgresql://user:password@host:port/dbname)")
    return url


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no LISTEN, no SET), so releasing one
    needs no reset query: this saves a round trip per operation."""


def _pool_extras() -> dict[str, Any]:
    if "reset" in inspect.signature(asyncpg.create_pool).parameters:  # asyncpg >= 0.30
        return {"reset": _keep_session}
    return {}


async def create_support_tables(conn: asyncpg.Connection) -> None:
    """Create the tables the backend keeps for itself (schema metadata, the table registry)
    if missing, under the DDL lock so that workers starting together do not collide."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
        for stmt in SUPPORT_TABLES:
            await conn.execute(stmt)


async def create_component_table(conn: asyncpg.Connection, ref: TableReference) -> None:
    """Create the table of ``ref`` if missing and register it; call inside a transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
    for stmt in create_table_sql(ref):
        await conn.execute(stmt)
    comp = ref.comp_cls
    await conn.execute(
        f"INSERT INTO {TABLES_TABLE} (table_name, instance_name, namespace, comp_name, cluster_id) "
        f"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name) DO NOTHING",
        table_name(ref), ref.instance_name, comp.namespace_, comp.name_, ref.cluster_id,
    )


class PostgresBackendClient(BackendClient):
    """One PostgreSQL database: the master, or a read-only hot standby (``is_servant``).

    Options: ``min_size``/``max_size`` of the connection pool; anything else is passed
    to ``asyncpg.connect`` (``ssl``, ``server_settings``, ``command_timeout``...).
    """

    def __init__(self, url: str, is_servant: bool = False, **options: Any) -> None:
        self.url = check_url(url)
        self.is_servant = is_servant
        self._min_size = int(options.pop("min_size", POOL_MIN_SIZE))
        self._max_size = int(options.pop("max_size", POOL_MAX_SIZE))
        self._connect_options = options
        self._pool: asyncpg.Pool | None = None
        self._codecs: dict[type, PGRowCodec] = {}
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise ConnectionError(f"the PostgreSQL backend {self._safe_url()} is closed")
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.url, min_size=self._min_size, max_size=self._max_size,
                **_pool_extras(), **self._connect_options,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConnectionError(f"cannot connect to PostgreSQL at {self._safe_url()}: {exc}") from exc
        if not self.is_servant:  # a hot standby is read-only; the master creates them
            async with pool.acquire() as conn:
                await create_support_tables(conn)
        self._pool = pool

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await pool.close()
            except Exception:  # a connection is still busy or did not close cleanly
                pool.terminate()

    def _safe_url(self) -> str:
        """The URL for messages: no password, no query (which may hold one)."""
        parsed = urlparse(self.url)
        user = parsed.netloc.rpartition("@")[0].partition(":")[0]
        host = parsed.netloc.rpartition("@")[2]
        return f"{parsed.scheme}://{user + '@' if user else ''}{host}{parsed.path}"

    @property
    def pool(self) -> asyncpg.Pool:
        if self._closed:
            raise ConnectionError(f"the PostgreSQL backend {self._safe_url()} is closed")
        if self._pool is None:
            raise ConnectionError(
                f"the PostgreSQL backend {self._safe_url()} is not open: await backend.open() first"
            )
        return self._pool

    def codec(self, comp) -> PGRowCodec:
        codec = self._codecs.get(comp)
        if codec is None:
            codec = self._codecs[comp] = PGRowCodec(comp)
        return codec

    # -- reads ----------------------------------------------------------------------------

    async def _fetch(self, sql: str, *params: Any) -> list | None:
        """Rows of a read; None when the table does not exist (yet)."""
        try:
            return await self.pool.fetch(sql, *params)
        except asyncpg.UndefinedTableError:
            return None

    async def get(self, ref: TableReference, row_id: int) -> np.record | None:
        codec = self.codec(ref.comp_cls)
        sql = f"SELECT {codec.select_list} FROM {quote(table_name(ref))} WHERE {codec.columns['id']} = $1"
        rows = await self._fetch(sql, int(row_id))
        return codec.decode_many(rows)[0] if rows else None

    async def get_many(self, ref: TableReference, row_ids: list[int]) -> list[np.record | None]:
        if not row_ids:
            return []
        codec = self.codec(ref.comp_cls)
        ids = [int(i) for i in row_ids]
        sql = (f"SELECT {codec.select_list} FROM {quote(table_name(ref))} "
               f"WHERE {codec.columns['id']} = ANY($1::bigint[])")
        rows = await self._fetch(sql, ids)
        return in_id_order(ids, codec.decode_many(rows or []))

    def _range_sql(self, ref, index, bounds: Bounds, limit, desc, columns) -> tuple[str, list]:
        codec = self.codec(ref.comp_cls)
        return range_query(quote(table_name(ref)), columns, codec.columns[index], codec.columns["id"], bounds,
                           codec.value(index, bounds.low), codec.value(index, bounds.high), limit, desc,
                           lambda n: f"${n}")

    async def range(self, ref, index, bounds: Bounds, limit, desc) -> np.recarray:
        codec = self.codec(ref.comp_cls)
        if bounds.empty or limit == 0:
            return codec.decode_many([])
        sql, params = self._range_sql(ref, index, bounds, limit, desc, codec.select_list)
        return codec.decode_many(await self._fetch(sql, *params) or [])

    async def range_ids(self, ref, index, bounds: Bounds, limit, desc) -> list[int]:
        if bounds.empty or limit == 0:
            return []
        codec = self.codec(ref.comp_cls)
        sql, params = self._range_sql(ref, index, bounds, limit, desc, codec.columns["id"])
        return [r[0] for r in await self._fetch(sql, *params) or []]

    async def find_unique(self, ref, values: list[tuple[str, Any]]) -> list[int | None]:
        if not values:
            return []
        codec = self.codec(ref.comp_cls)
        tname, id_col = quote(table_name(ref)), codec.columns["id"]
        lookups = ", ".join(
            f"(SELECT {id_col} FROM {tname} WHERE {codec.columns[f]} = ${n} LIMIT 1)"
            for n, (f, _) in enumerate(values, 1)
        )
        rows = await self._fetch(f"SELECT {lookups}", *(codec.value(f, v) for f, v in values))
        return list(rows[0]) if rows else [None] * len(values)

    # -- commit -----------------------------------------------------------------------------

    def _unique_race(self, writes: WriteSet, exc: asyncpg.UniqueViolationError) -> RaceCondition:
        constraint = getattr(exc, "constraint_name", None) or ""
        for tw in writes:
            if constraint == index_name(table_name(tw.ref), "id"):
                return RaceCondition(
                    f"RACE: key already exists: a {tw.ref.comp_name} row with an inserted id "
                    f"was created by another transaction ({exc.detail or exc})"
                )
            field = unique_constraints(tw.ref).get(constraint)
            if field is not None:
                return RaceCondition(
                    f"UNIQUE constraint violation on {tw.ref.comp_name}.{field}: the value was "
                    f"taken by another transaction meanwhile ({exc.detail or exc})"
                )
        return RaceCondition(f"UNIQUE constraint violation: {exc}")

    async def commit(self, writes: WriteSet) -> None:
        if self.is_servant:
            raise RuntimeError("cannot commit on a read replica")
        if not writes:
            raise ValueError("nothing to commit")
        for attempt in range(COMMIT_ATTEMPTS):
            last = attempt == COMMIT_ATTEMPTS - 1
            async with self.pool.acquire() as conn:
                try:
                    await Commit(conn, writes, self.codec, self.change_channel).run()
                    return
                except asyncpg.UniqueViolationError as exc:
                    raise self._unique_race(writes, exc) from exc
                except asyncpg.TransactionRollbackError as exc:  # deadlock, serialization failure
                    raise RaceCondition(f"the commit was rolled back by PostgreSQL: {exc}") from exc
                except asyncpg.InvalidCachedStatementError:
                    if last:  # a table changed under a prepared statement: it is prepared anew
                        raise
                except asyncpg.UndefinedTableError:
                    if last:
                        raise
                    async with conn.transaction():  # first write to a table of a new cluster id
                        for tw in writes:
                            await create_component_table(conn, tw.ref)

    # -- events and maintenance ---------------------------------------------------------------

    def change_channel(self, ref: TableReference) -> str:
        """A valid LISTEN channel (at most 63 bytes) per instance, component and cluster."""
        return short_name(f"{ref.instance_name}:{ref.comp_name}:{{CLU{ref.cluster_id}}}")

    def change_feed(self) -> ChangeFeed:
        self.pool  # noqa: B018 - raises when closed or not open
        return events.PostgresChangeFeed(self.url, dict(self._connect_options))

    def maintenance(self) -> TableMaintenance:
        from .maint import PostgresTableMaintenance

        return PostgresTableMaintenance(self)
