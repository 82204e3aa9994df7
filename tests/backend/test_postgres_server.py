"""`hetu start` on PostgreSQL: real server processes, real sockets, one shared database."""

from __future__ import annotations

import pytest

from tests.conftest import postgres_server
from tests.server.conftest import ServerProcess
from tests.server.test_subscriptions import connect, has, next_delta


@pytest.fixture
async def pg_url():
    return await postgres_server().fresh_schema_url()


async def test_two_workers_lease_distinct_ids_and_share_pushes(tmp_path, pg_url):
    srv = ServerProcess(tmp_path, pg_url, workers=2)
    try:
        logs = srv.logs()
        assert "worker id 0" in logs and "worker id 1" in logs
        clients = [await connect(srv) for _ in range(4)]
        subs = [(c, (await c.subscribe_range("Board", "owner", 700, 700, 10))[0]) for c in clients]
        row_id = await clients[0].call("post", 700, 1, "pg")
        for client, sub_id in subs:
            await next_delta(client, sub_id, has(row_id, note="pg"))
        await clients[1].call("edit", row_id, 2, "edited")
        for client, sub_id in subs:
            await next_delta(client, sub_id, has(row_id, score=2, note="edited"))
        for client in clients:
            await client.close()
    finally:
        srv.stop()


async def test_writes_through_one_server_process_reach_subscribers_of_another(tmp_path, pg_url):
    first = ServerProcess(tmp_path, pg_url)
    second = ServerProcess(tmp_path, pg_url)
    try:
        reader = await connect(first)
        writer = await connect(second)
        sub_id, _ = await reader.subscribe_range("Board", "owner", 500, 500, 10)
        row_id = await writer.call("post", 500, 1, "cross")
        await next_delta(reader, sub_id, has(row_id, note="cross"))
        await writer.call("remove", row_id)
        await next_delta(reader, sub_id, lambda d: row_id in d and d[row_id] is None)
        await reader.close()
        await writer.close()
    finally:
        first.stop()
        second.stop()
