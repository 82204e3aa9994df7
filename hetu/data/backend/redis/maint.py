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
# KEYS[1] = meta hash, ARGV = field, value, ...: create it unless it exists; 1 if created
CREATE_META = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class RedisTableMaintenance(TableMaintenance):
    """Schema upkeep on Redis (what ``hetu upgrade`` and startup checks use): table metadata
    hashes, creating, counting and dropping component keys."""

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
        # One atomic step: a worker checking the table meanwhile sees all of the meta or
        # none of it (two commands let it read a meta without cluster_id).
        flat = [item for pair in self._meta_fields(ref).items() for item in pair]
        if not await self.client.redis.eval(CREATE_META, 1, keys.meta_key(ref), *flat):
            raise RaceCondition(f"table {ref.instance_name}:{ref.comp_name} already exists")

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
