"""`hetu start` on a real 3-master Redis Cluster: calls commit, subscriptions get pushes."""

from __future__ import annotations

import pytest
import redis

from tests.backend.test_redis_cluster import redis_cluster, stop_redis_cluster
from tests.server.conftest import ServerProcess
from tests.server.test_subscriptions import connect, has, next_delta


@pytest.fixture(scope="module")
def cluster_server(tmp_path_factory):
    cluster = redis_cluster()
    cluster.flush()
    tmp = tmp_path_factory.mktemp("srvcluster")
    srv = ServerProcess(tmp, cluster.url())
    yield srv, cluster
    srv.stop()


@pytest.fixture(scope="session", autouse=True)
def _stop_cluster_at_session_end():
    yield
    stop_redis_cluster()


def _nodes_holding(cluster, pattern: str) -> set[int]:
    ports = set()
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as r:
            if next(r.scan_iter(match=pattern, count=1000), None) is not None:
                ports.add(node.port)
    return ports


async def test_calls_commit_and_subscriptions_are_pushed(cluster_server):
    srv, cluster = cluster_server
    writer, reader = await connect(srv), await connect(srv)
    try:
        row_id = await writer.call("post", 700, 1, "first")
        sub_id, row = await reader.subscribe_get("Board", "id", row_id)
        assert row["note"] == "first"
        range_id, rows = await reader.subscribe_range("Board", "owner", 700, 700, 10)
        assert [r["note"] for r in rows] == ["first"]

        await writer.call("edit", row_id, 2, "second")
        assert (await next_delta(reader, sub_id, has(row_id, note="second")))[row_id]["score"] == 2
        assert (await next_delta(reader, range_id, has(row_id, note="second")))[row_id]["score"] == 2

        second_id = await writer.call("post", 700, 3, "third")
        assert (await next_delta(reader, range_id, has(second_id, note="third")))[second_id]["score"] == 3
    finally:
        await writer.close()
        await reader.close()
    # the server's tables really are spread over the cluster: meta keys (no hash tag)
    # and the rows of its system clusters live on more than one node
    assert len(_nodes_holding(cluster, "test:*")) >= 2
    assert _nodes_holding(cluster, "test:Board:{CLU*")
