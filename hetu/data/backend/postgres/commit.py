"""One commit = one PostgreSQL transaction, in as few round trips as possible.

``BEGIN``; version checks; deletes, updates, inserts; then the NOTIFYs and ``COMMIT``
sent together. Versions are checked under row locks:

* one existing row touched (the common "read a row, write it back"): the UPDATE or
  DELETE itself carries ``AND _version = <read>``, and its row count tells;
* otherwise every existing row touched (read, updated or deleted) is locked first with
  ``SELECT ... FOR UPDATE``, table by table in name order and by id within a table, so
  concurrent commits always lock in the same order and never deadlock each other.

Unique constraints are deferred to COMMIT, so values may move between rows within a
commit; a clash with another transaction surfaces as ``UniqueViolationError``.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from ..base import TableWrites, WriteSet
from ..errors import RaceCondition
from ..table import TableReference
from .events import notifications
from .schema import PGRowCodec, quote, table_name


def sql_literal(text: str) -> str:
    """``text`` as a string literal, whatever ``standard_conforming_strings`` says."""
    escaped = text.replace("'", "''")
    if "\\" in text:
        return "E'" + escaped.replace("\\", "\\\\") + "'"
    return "'" + escaped + "'"


def _version_mismatch(ref: TableReference, row_id: int, read: int, now: int | None) -> RaceCondition:
    state = "deleted" if now is None else f"now {now}"
    return RaceCondition(
        f"Version mismatch on {ref.comp_name} row {row_id}: read version {read}, {state} "
        f"(changed by another transaction)"
    )


def _expected_versions(tw: TableWrites) -> dict[int, int]:
    expected = dict(tw.reads)
    for old, _, _ in tw.updates:
        expected[int(old.id)] = int(old._version)
    for row in tw.deletes:
        expected[int(row.id)] = int(row._version)
    return expected


class Commit:
    """Applies one write set on one connection (inside :meth:`run`'s transaction)."""

    def __init__(self, conn: asyncpg.Connection, writes: WriteSet,
                 codec_of: Callable[[type], PGRowCodec], channel_of: Callable[[TableReference], str]) -> None:
        self.conn = conn
        self.writes = writes
        self.codec_of = codec_of
        self.channel_of = channel_of
        expected = [_expected_versions(tw) for tw in writes]
        self.lock_first = sum(map(len, expected)) > 1 or any(tw.reads for tw in writes)
        self.expected = expected

    async def run(self) -> None:
        conn = self.conn
        await conn.execute("BEGIN")
        try:
            if self.lock_first:
                for tw, expected in sorted(zip(self.writes, self.expected), key=lambda p: table_name(p[0].ref)):
                    await self._lock_and_check(tw, expected)
            for tw in self.writes:
                await self._write(tw)
            await conn.execute(self._notify_sql() + "COMMIT")
        except Exception:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            raise

    async def _lock_and_check(self, tw: TableWrites, expected: dict[int, int]) -> None:
        if not expected:
            return
        id_col = self.codec_of(tw.ref.comp_cls).columns["id"]
        found = dict(await self.conn.fetch(
            f"SELECT {id_col}, _version FROM {quote(table_name(tw.ref))} "
            f"WHERE {id_col} = ANY($1::bigint[]) ORDER BY {id_col} FOR UPDATE",
            sorted(expected),
        ))
        for row_id, version in expected.items():
            if found.get(row_id) != version:
                raise _version_mismatch(tw.ref, row_id, version, found.get(row_id))

    async def _checked(self, tw: TableWrites, row_id: int, read: int, sql: str, *params) -> None:
        """Run a single-row statement whose WHERE includes the version read."""
        status = await self.conn.execute(sql, *params)
        if status.rsplit(" ", 1)[-1] != "1":
            now = await self.conn.fetchval(
                f"SELECT _version FROM {quote(table_name(tw.ref))} "
                f"WHERE {self.codec_of(tw.ref.comp_cls).columns['id']} = $1", row_id,
            )
            raise _version_mismatch(tw.ref, row_id, read, now)

    async def _write(self, tw: TableWrites) -> None:
        codec = self.codec_of(tw.ref.comp_cls)
        tname = quote(table_name(tw.ref))
        id_col = codec.columns["id"]
        if tw.deletes:
            if self.lock_first:
                await self.conn.execute(
                    f"DELETE FROM {tname} WHERE {id_col} = ANY($1::bigint[])", [int(r.id) for r in tw.deletes]
                )
            else:
                (row,) = tw.deletes
                await self._checked(tw, int(row.id), int(row._version),
                                    f"DELETE FROM {tname} WHERE {id_col} = $1 AND _version = $2",
                                    int(row.id), int(row._version))
        by_fields: dict[tuple[str, ...], list[list]] = {}
        for old, new, changed in tw.updates:
            fields = tuple(f for f in changed if f not in ("id", "_version"))
            by_fields.setdefault(fields, []).append(codec.values(new, fields) + [int(new.id), int(old._version)])
        for fields, params in by_fields.items():
            sets = "".join(f"{codec.columns[f]} = ${n}, " for n, f in enumerate(fields, 1))
            n = len(fields)
            sql = (f"UPDATE {tname} SET {sets}_version = _version + 1 "
                   f"WHERE {id_col} = ${n + 1} AND _version = ${n + 2}")
            if self.lock_first:
                await self.conn.executemany(sql, params)
            else:
                (only,) = params
                await self._checked(tw, only[n], only[n + 1], sql, *only)
        if tw.inserts:
            names = [n for n in codec.names if n != "_version"]
            cols = ", ".join(codec.columns[n] for n in names)
            marks = ", ".join(f"${n}" for n in range(1, len(names) + 1))
            rows = [codec.values(row, names) for row in tw.inserts]
            sql = f"INSERT INTO {tname} ({cols}, _version) VALUES ({marks}, 1)"
            if len(rows) == 1:
                await self.conn.execute(sql, *rows[0])
            else:
                await self.conn.executemany(sql, rows)

    def _notify_sql(self) -> str:
        """The NOTIFYs of every changed table; the server delivers them on COMMIT."""
        sql = []
        for tw in self.writes:
            if not tw.is_dirty():
                continue
            channel = sql_literal(self.channel_of(tw.ref))
            for payload in notifications(self.channel_of(tw.ref), tuple(tw.touched_rows()),
                                         tuple(tw.touched_indexes())):
                sql.append(f"SELECT pg_notify({channel}, {sql_literal(payload)}); ")
        return "".join(sql)
