"""Memory per idle connection: the server's resident memory before and after N more
connections (VmRSS of the server process and its worker children, from /proc)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hetu.client import HeTuClient

from .load import CONNECT_CONCURRENCY
from .redisstats import RedisProbe
from .servers import rss_bytes

WARM_UP_CONNECTIONS = 10
SETTLE_SECONDS = 2.0


@dataclass
class MemoryResult:
    connections: int
    rss_before: int
    rss_after: int
    redis_clients_before: int | None = None
    redis_clients_after: int | None = None

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connections


async def _open(url: str, auth_key: str | None, count: int) -> list[HeTuClient]:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> HeTuClient:
        async with limit:
            return await HeTuClient.connect(url, auth_key=auth_key, timeout=60)

    return await asyncio.gather(*(connect() for _ in range(count)))


async def _measure(url: str, auth_key: str | None, connections: int, server_pid: int,
                   redis_url: str | None) -> MemoryResult:
    probe = RedisProbe(redis_url) if redis_url else None
    # a few connections first, so one-off allocations of the first ones are not counted
    warm = await _open(url, auth_key, WARM_UP_CONNECTIONS)
    await asyncio.sleep(SETTLE_SECONDS)
    before, clients_before = rss_bytes(server_pid), probe.snapshot().clients if probe else None
    idle = await _open(url, auth_key, connections)
    await asyncio.sleep(SETTLE_SECONDS)
    after, clients_after = rss_bytes(server_pid), probe.snapshot().clients if probe else None
    await asyncio.gather(*(c.close() for c in warm + idle), return_exceptions=True)
    if probe:
        probe.close()
    return MemoryResult(connections, before, after, clients_before, clients_after)


def run_memory(url: str, auth_key: str | None, connections: int, server_pid: int,
               redis_url: str | None = None) -> MemoryResult:
    return asyncio.run(_measure(url, auth_key, connections, server_pid, redis_url))
