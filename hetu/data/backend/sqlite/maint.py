"""Table meta and maintenance on SQLite."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from ..base import TableMaintenance, TableMeta
from ..errors import RaceCondition
from ..table import TableReference
from .schema import META_TABLE, create_table_sql, quote, table_name

if TYPE_CHECKING:
    from .client import SQLiteBackendClient


class SQLiteTableMaintenance(TableMaintenance):
    """Schema upkeep on SQLite (what ``hetu upgrade`` and startup checks use): table metadata,
    creating and dropping component tables."""

    def __init__(self, client: SQLiteBackendClient) -> None:
        self.client = client

    async def _write(self, fn, *args):
        return await self.client._conn("writer").run(fn, *args)

    async def read_meta(self, ref: TableReference) -> TableMeta | None:
        def read(c: sqlite3.Connection):
            return c.execute(
                f"SELECT version, cluster_id, json FROM {META_TABLE} WHERE instance_name = ? AND comp_name = ?",
                (ref.instance_name, ref.comp_name),
            ).fetchone()

        row = await self.client._conn("reader").run(read)
        return TableMeta(version=row[0], cluster_id=int(row[1]), json=row[2]) if row else None

    @staticmethod
    def _upsert_meta(c: sqlite3.Connection, ref: TableReference) -> None:
        comp = ref.comp_cls
        c.execute(
            f"INSERT OR REPLACE INTO {META_TABLE} (instance_name, comp_name, version, json, cluster_id) "
            f"VALUES (?, ?, ?, ?, ?)",
            (ref.instance_name, ref.comp_name, comp.schema_version(), comp.json_, ref.cluster_id),
        )

    async def write_meta(self, ref: TableReference) -> None:
        await self._write(self._upsert_meta, ref)

    async def create_table(self, ref: TableReference) -> None:
        def create(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                exists = c.execute(
                    f"SELECT 1 FROM {META_TABLE} WHERE instance_name = ? AND comp_name = ?",
                    (ref.instance_name, ref.comp_name),
                ).fetchone()
                if exists:
                    raise RaceCondition(f"table {ref.instance_name}:{ref.comp_name} already exists")
                for stmt in create_table_sql(ref):
                    c.execute(stmt)
                self._upsert_meta(c, ref)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._write(create)

    async def drop_table(self, ref: TableReference) -> int:
        def drop(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                count = 0
                prefix = f"{ref.instance_name}:{ref.comp_cls.namespace_}:{ref.comp_name}:"
                tables = [
                    name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                    if name.startswith(prefix) and name[len(prefix):].isdigit()
                ]
                tables.append(table_name(ref))
                for name in dict.fromkeys(tables):
                    try:
                        if name == table_name(ref):
                            count = c.execute(f"SELECT COUNT(*) FROM {quote(name)}").fetchone()[0]
                        c.execute(f"DROP TABLE {quote(name)}")
                    except sqlite3.OperationalError:
                        pass  # never created
                c.execute(
                    f"DELETE FROM {META_TABLE} WHERE instance_name = ? AND comp_name = ?",
                    (ref.instance_name, ref.comp_name),
                )
                c.execute("COMMIT")
                return count
            except BaseException:
                c.execute("ROLLBACK")
                raise

        return await self._write(drop)
