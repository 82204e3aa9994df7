"""Table meta and maintenance on PostgreSQL (DDL is transactional and serialised)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from ..base import TableMaintenance, TableMeta
from ..errors import RaceCondition
from ..table import TableReference
from .client import create_component_table
from .schema import DDL_LOCK_KEY, META_TABLE, TABLES_TABLE, quote, table_name

if TYPE_CHECKING:
    from .client import PostgresBackendClient

UPSERT_META = (
    f"INSERT INTO {META_TABLE} (instance_name, comp_name, version, json, cluster_id) "
    f"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_name, comp_name) "
    f"DO UPDATE SET version = EXCLUDED.version, json = EXCLUDED.json, cluster_id = EXCLUDED.cluster_id"
)


def _meta_params(ref: TableReference) -> tuple:
    comp = ref.comp_cls
    return ref.instance_name, comp.name_, comp.schema_version(), comp.json_, ref.cluster_id


class PostgresTableMaintenance(TableMaintenance):
    """Schema upkeep on PostgreSQL (what ``hetu upgrade`` and startup checks use): table
    metadata, creating and dropping component tables."""

    def __init__(self, client: PostgresBackendClient) -> None:
        self.client = client

    async def read_meta(self, ref: TableReference) -> TableMeta | None:
        row = await self.client.pool.fetchrow(
            f"SELECT version, cluster_id, json FROM {META_TABLE} WHERE instance_name = $1 AND comp_name = $2",
            ref.instance_name, ref.comp_name,
        )
        return TableMeta(version=row[0], cluster_id=int(row[1]), json=row[2]) if row else None

    async def write_meta(self, ref: TableReference) -> None:
        await self.client.pool.execute(UPSERT_META, *_meta_params(ref))

    async def create_table(self, ref: TableReference) -> None:
        async with self.client.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
            exists = await conn.fetchval(
                f"SELECT 1 FROM {META_TABLE} WHERE instance_name = $1 AND comp_name = $2",
                ref.instance_name, ref.comp_name,
            )
            if exists:
                raise RaceCondition(f"table {ref.instance_name}:{ref.comp_name} already exists")
            await create_component_table(conn, ref)
            await conn.execute(UPSERT_META, *_meta_params(ref))

    async def drop_table(self, ref: TableReference) -> int:
        """Drop the tables of ``ref`` in every cluster id, and its meta (copies are kept)."""
        comp = ref.comp_cls
        own = table_name(ref)
        async with self.client.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", DDL_LOCK_KEY)
            registered = await conn.fetch(
                f"SELECT table_name FROM {TABLES_TABLE} "
                f"WHERE instance_name = $1 AND namespace = $2 AND comp_name = $3",
                ref.instance_name, comp.namespace_, comp.name_,
            )
            names = list(dict.fromkeys([own, *(r[0] for r in registered)]))
            count = 0
            for name in names:
                if name == own:
                    try:
                        async with conn.transaction():  # a savepoint: the table may not exist
                            count = await conn.fetchval(f"SELECT COUNT(*) FROM {quote(name)}")
                    except asyncpg.UndefinedTableError:
                        count = 0
                await conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
            await conn.execute(f"DELETE FROM {TABLES_TABLE} WHERE table_name = ANY($1::text[])", names)
            await conn.execute(
                f"DELETE FROM {META_TABLE} WHERE instance_name = $1 AND comp_name = $2",
                ref.instance_name, ref.comp_name,
            )
            return count
