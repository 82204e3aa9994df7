"""The Redis connection pool waits for a free connection instead of failing."""

from __future__ import annotations

import asyncio

import redis

from hetu.data.backend import Backend, TableReference
from tests.backend.conftest import INSTANCE, Item
from tests.conftest import redis_server


async def test_a_burst_larger_than_the_pool_waits_instead_of_failing():
    url = redis_server("redis").url()
    redis.Redis.from_url(url).flushdb()
    backend = Backend.from_config({"master": url, "max_connections": 2})
    await backend.open()
    try:
        ref = TableReference(Item, INSTANCE, 1)
        await backend.maintenance().create_table(ref)
        rows = await asyncio.gather(*(backend.master.get(ref, i) for i in range(200)))
        assert rows == [None] * 200
        assert redis.Redis.from_url(url).info("clients")["connected_clients"] <= 3  # 2 + this probe
    finally:
        await backend.close()
