"""Table meta and maintenance on Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio.cluster import RedisCluster

from ..base import TableMaintenance, TableMeta
from ..errors import RaceCondition
from ..table import TableReference
from . import keys

if TYPE_CHECKING:
    from .client import RedisBackendClient

SCAN_BATCH = 1000


class RedisTableMaintenance(TableMaintenance):
    def __init__(self, client: RedisBackendClient) -> None:
        self.client = client

    async def read_meta(self, ref: TableReference) -> TableMeta | None:
        meta = await self.client.redis.hgetall(keys.meta_key(ref))
        if not meta or b"version" not in meta:
            return None
        return TableMeta(
            version=meta[b"version"].decode(),
            cluster_id=int(meta.get(b"cluster_id", b"-1")),
            json=meta.get(b"json", b"").decode(),
        )

    def _meta_fields(self, ref: TableReference) -> dict:
        comp = ref.comp_cls
        return {"json": comp.json_, "version": comp.schema_version(), "cluster_id": str(ref.cluster_id)}

    async def write_meta(self, ref: TableReference) -> None:
        await self.client.redis.hset(keys.meta_key(ref), mapping=self._meta_fields(ref))

    async def create_table(self, ref: TableReference) -> None:
        # Rows and indexes appear with the first write; a table is its meta.
        r = self.client.redis
        fields = self._meta_fields(ref)
        if not await r.hsetnx(keys.meta_key(ref), "version", fields["version"]):
            raise RaceCondition(f"table {ref.instance_name}:{ref.comp_name} already exists")
        await r.hset(keys.meta_key(ref), mapping=fields)

    async def _scan_delete(self, pattern: str) -> int:
        # On a cluster SCAN visits every primary and UNLINK is split by slot.
        r = self.client.redis
        deleted = 0
        batch: list[bytes] = []
        async for key in r.scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                deleted += await r.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await r.unlink(*batch)
        return deleted

    async def count_rows(self, ref: TableReference) -> int:
        r = self.client.redis
        prefix = keys.cluster_prefix(ref)
        # On a cluster (where SCAN visits every primary) the rows live on one slot's node.
        where = {"target_nodes": r.get_node_from_key(prefix)} if isinstance(r, RedisCluster) else {}
        count = 0
        async for _ in r.scan_iter(match=f"{prefix}:id:*", count=SCAN_BATCH, **where):
            count += 1
        return count

    async def drop_table(self, ref: TableReference) -> int:
        """Delete rows, indexes and meta of ``ref`` (copies ``Comp:<suffix>`` are kept)."""
        rows = await self.count_rows(ref)
        # every cluster id of this component, but not its copies (other names)
        await self._scan_delete(f"{keys.table_prefix(ref)}:{{CLU*")
        await self.client.redis.delete(keys.meta_key(ref))
        return rows
