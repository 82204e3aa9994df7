"""Subscription reads go to a real read replica (`redis-server --replicaof`)."""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import RedisServer, redis_binary
from tests.server.conftest import ServerProcess
from tests.server.test_subscriptions import connect, has, next_delta


def _wait_for_link(replica: redis.Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if replica.info("replication").get("master_link_status") == "up":
            return
        time.sleep(0.05)
    raise RuntimeError("the replica did not connect to its master")


def _reads(r: redis.Redis) -> int:
    """Row and range reads served by this server so far."""
    stats = r.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("hgetall", "evalsha_ro"))


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    binary = redis_binary()
    master = RedisServer(binary)
    replica = RedisServer(binary, "--replicaof", "127.0.0.1", str(master.port))
    _wait_for_link(redis.Redis(port=replica.port))
    tmp = tmp_path_factory.mktemp("srvrep")
    # master_weight keeps transactional reads on the master: only subscriptions use the replica
    srv = ServerProcess(tmp, master.url(), BACKENDS={"default": {
        "master": master.url(), "servants": [replica.url()], "master_weight": 1e9}})
    yield srv, redis.Redis(port=master.port), redis.Redis(port=replica.port)
    srv.stop()
    replica.stop()
    master.stop()


async def test_subscription_reads_are_served_by_the_replica(replicated):
    srv, master, replica = replicated
    client = await connect(srv)
    try:
        row_id = await client.call("post", 500, 1, "first")
        master.execute_command("WAIT", 1, 5000)  # replication is asynchronous
        before = _reads(replica)
        sub_id, row = await client.subscribe_get("Board", "id", row_id)
        assert row["note"] == "first"
        assert _reads(replica) == before + 1  # the row read hit the replica

        range_id, rows = await client.subscribe_range("Board", "owner", 500, 500, 10)
        assert [r["note"] for r in rows] == ["first"]
        assert _reads(replica) >= before + 2  # the range query too

        # pushes: the change event and the row both come through the replica, in order
        pushed_before = _reads(replica)
        await client.call("edit", row_id, 2, "second")
        assert (await next_delta(client, sub_id, has(row_id, note="second")))[row_id]["score"] == 2
        assert (await next_delta(client, range_id, has(row_id, note="second")))[row_id]["score"] == 2
        assert _reads(replica) > pushed_before
        assert replica.info("replication")["role"] == "slave"
        assert master.info("replication")["connected_slaves"] == 1
    finally:
        await client.close()
