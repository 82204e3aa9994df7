"""Several server processes on one Redis: shared pushes, and one crashing alone."""

from __future__ import annotations

import redis

from tests.conftest import redis_server
from tests.server.conftest import ServerProcess
from tests.server.test_subscriptions import connect, has, next_delta


async def test_killing_one_server_does_not_disturb_clients_of_another(tmp_path):
    url = redis_server("redis").url()
    redis.Redis.from_url(url).flushdb()
    doomed, survivor = ServerProcess(tmp_path, url), ServerProcess(tmp_path, url)
    try:
        victim, client = await connect(doomed), await connect(survivor)
        sub_id, _ = await client.subscribe_range("Board", "owner", 950, 950, 10)
        row_id = await victim.call("post", 950, 1, "before")
        await next_delta(client, sub_id, has(row_id, note="before"))  # across processes

        doomed.kill()  # SIGKILL, workers included
        await victim.wait_closed()

        mine = await client.call("post", 950, 2, "after")
        await next_delta(client, sub_id, has(mine, note="after"))
        newcomer = await connect(survivor)
        assert await newcomer.call("post", 951, 1) > 0
        await newcomer.close()
        await client.close()
    finally:
        doomed.stop()
        survivor.stop()


async def test_subscribers_of_one_range_share_one_read_of_the_changed_row(tmp_path):
    """1 insert, 40 connections watching the same range (one shape): the new row is read
    once per worker, and the range itself not at all (it had room for the row)."""
    url = redis_server("redis").url()
    r = redis.Redis.from_url(url)
    r.flushdb()
    srv = ServerProcess(tmp_path, url)
    clients = [await connect(srv) for _ in range(40)]
    try:
        subs = [(c, (await c.subscribe_range("Board", "owner", 960, 960, 10))[0]) for c in clients]
        r.config_resetstat()
        row_id = await clients[0].call("post", 960, 1, "shared")
        for client, sub_id in subs:
            await next_delta(client, sub_id, has(row_id, note="shared"))
        stats = r.info("commandstats")
        assert stats.get("cmdstat_hgetall", {}).get("calls", 0) == 1, stats
        assert stats.get("cmdstat_evalsha_ro", {}).get("calls", 0) == 0, stats  # no range read
    finally:
        for client in clients:
            await client.close()
        srv.stop()
