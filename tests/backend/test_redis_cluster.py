"""The Redis backend on a real 3-master Redis Cluster (data-layer.md §5.2).

The cluster runs on loopback, started once per test session. Besides the cluster
specific tests below, the session, concurrency, range, event and maintenance behaviour
tests run here again, against a cluster backend.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import subprocess
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from hetu.data.backend import Backend, RaceCondition, TableReference, TableWrites
from hetu.data.backend.redis import keys
from hetu.data.backend.redis.client import COMMIT_SCRIPT
from hetu.data.backend.redis.cluster import server_versions, slot_of, split_cluster_url
from tests.backend.conftest import INSTANCE, Counter, Item, Keyed, create_tables
from tests.conftest import RedisServer, free_port, redis_server

CLUSTER_SIZE = 3


class RedisClusterServers:
    """Three cluster-enabled ``redis-server`` s on loopback, joined into one cluster."""

    def __init__(self, server_binary: str, cli_binary: str) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(CLUSTER_SIZE):
                # the bus port defaults to port + 10000, which may be taken or > 65535
                self.nodes.append(RedisServer(server_binary, "--cluster-enabled", "yes",
                                              "--cluster-port", str(free_port()),
                                              "--cluster-config-file", "nodes.conf"))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run([cli_binary, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=30)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 20
        clients = [redis.Redis(port=n.port) for n in self.nodes]
        try:
            while time.monotonic() < deadline:
                if all(c.cluster("INFO")["cluster_state"] == "ok" for c in clients):
                    return
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def owner_port(self, key: str) -> int:
        """The port of the primary that owns the slot of ``key``."""
        with redis.Redis(port=self.nodes[0].port) as c:
            slot = c.cluster("KEYSLOT", key)
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise RuntimeError(f"slot of {key} is not covered")

    def flush(self) -> None:
        for n in self.nodes:
            with redis.Redis(port=n.port) as c:
                c.flushall()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.nodes.clear()


_cluster: list[RedisClusterServers] = []


def redis_cluster() -> RedisClusterServers:
    """The session's cluster; skips when redis-server or redis-cli is missing."""
    if not _cluster:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            pytest.skip("Redis Cluster tests need redis-server and redis-cli on PATH "
                        "(Debian: apt-get install redis-server)")
        _cluster.append(RedisClusterServers(server, cli))
        atexit.register(stop_redis_cluster)
    return _cluster[0]


def stop_redis_cluster() -> None:
    while _cluster:
        _cluster.pop().stop()


@pytest.fixture(scope="session")
def cluster_servers():
    yield redis_cluster()
    stop_redis_cluster()


async def open_cluster_backend(cluster: RedisClusterServers) -> Backend:
    cluster.flush()
    backend = Backend.from_url(cluster.url())
    await backend.open()
    return backend


@pytest.fixture
async def backend(cluster_servers):
    """Overrides the suite's fixture: the behaviour tests imported below use it."""
    be = await open_cluster_backend(cluster_servers)
    await create_tables(be, Item, Keyed, Counter)
    yield be
    await be.close()


def cluster_ids_on_distinct_nodes(cluster: RedisClusterServers, count: int) -> list[int]:
    """The smallest cluster ids whose keys live on ``count`` different primaries."""
    chosen: dict[int, int] = {}
    for cid in range(1, 1000):
        port = cluster.owner_port(keys.cluster_prefix(TableReference(Item, INSTANCE, cid)))
        chosen.setdefault(port, cid)
        if len(chosen) == count:
            return sorted(chosen.values())
    raise RuntimeError("no cluster ids spread over the nodes")


async def create_cluster_table(backend: Backend, comp, cid: int) -> TableReference:
    """``comp`` in system cluster ``cid`` of its own instance (meta is per instance)."""
    ref = TableReference(comp, f"i{cid}", cid)
    await backend.maintenance().create_table(ref)
    return ref


# -- configuration ---------------------------------------------------------------------


def test_cluster_url_scheme_is_translated_for_redis_py():
    assert split_cluster_url("redis+cluster://h:7000/0") == ("redis://h:7000/0", True)
    assert split_cluster_url("rediss+cluster://h:7000") == ("rediss://h:7000", True)
    assert split_cluster_url("redis://h:6379/0") == ("redis://h:6379/0", False)
    with pytest.raises(ValueError, match="unsupported Redis Cluster URL"):
        split_cluster_url("unix+cluster:///tmp/redis.sock")


@pytest.mark.parametrize("option", ["cluster", "raw_clustering"])
async def test_config_key_selects_cluster_mode(cluster_servers, option):
    plain_url = f"redis://127.0.0.1:{cluster_servers.nodes[1].port}/0"
    backend = Backend.from_config({"type": "redis", "master": plain_url, option: True})
    try:
        await backend.open()
        assert backend.master.is_cluster
        assert isinstance(backend.master.redis, RedisCluster)
    finally:
        await backend.close()


async def test_a_cluster_servant_serves_reads_and_change_events(cluster_servers):
    cluster_servers.flush()
    url = cluster_servers.url()
    backend = Backend.from_config({"master": url, "servants": [url], "master_weight": 0.0})
    try:
        await backend.open()
        await create_tables(backend, Item)
        # a cluster's replicas are not health-probed: transactional reads use them,
        # subscriptions and the change feed stay on the primaries
        servant = backend.master_or_servant()
        assert servant.is_servant and servant.is_cluster
        assert backend.servant is backend.master
        feed = backend.change_feed()
        await feed.subscribe(backend.change_channel(TableReference(Item, INSTANCE, 1)))
        async with backend.session(INSTANCE, 1) as s:
            row = Item.new_row()
            row.name, row.time = "seen", 7
            await s.using(Item).insert(row)
        assert (await feed.get(timeout=5)).row_ids == (row.id,)
        await feed.close()
        async with backend.session(INSTANCE, 1) as s:  # reads from the servant
            assert (await s.using(Item).get(name="seen")).time == 7
            assert len(await s.using(Item).range(time=(0, 9))) == 1
    finally:
        await backend.close()


async def test_open_checks_the_version_of_every_primary(backend, cluster_servers):
    versions = await server_versions(backend.master.redis)
    assert sorted(versions) == sorted(f"127.0.0.1:{n.port}" for n in cluster_servers.nodes)


async def test_cluster_mode_on_a_standalone_server_says_so():
    standalone = redis_server("redis")
    backend = Backend.from_config({"master": standalone.url(), "raw_clustering": "true"})
    try:
        with pytest.raises(ConnectionError, match="Cluster mode is not enabled"):
            await backend.open()
    finally:
        await backend.close()


async def test_plain_url_without_the_option_stays_standalone(cluster_servers):
    backend = Backend.from_config({"master": f"redis://127.0.0.1:{cluster_servers.nodes[0].port}/0"})
    assert not backend.master.is_cluster
    await backend.close()


# -- routing -----------------------------------------------------------------------------


async def test_all_keys_of_a_transaction_share_the_slot_of_its_cluster_id(backend):
    ref = TableReference(Item, INSTANCE, 1)
    async with backend.session(INSTANCE, 1) as s:
        row = Item.new_row()
        row.name, row.time = "one", 1
        await s.using(Item).insert(row)
    slot = slot_of(keys.cluster_prefix(ref))
    found = [k async for k in backend.master.redis.scan_iter(match=f"{INSTANCE}:Item:{{CLU1}}:*")]
    assert found and {slot_of(k.decode()) for k in found} == {slot}


async def test_a_commit_touching_two_slots_is_refused(backend, cluster_servers):
    first, second = cluster_ids_on_distinct_nodes(cluster_servers, 2)
    writes = []
    for cid in (first, second):
        row = Item.new_row()
        row.name, row.time = f"c{cid}", cid
        writes.append(TableWrites(TableReference(Item, INSTANCE, cid), inserts=[row]))
    with pytest.raises(ValueError, match="within one Redis Cluster slot"):
        await backend.master.commit(writes)
    async with backend.session(INSTANCE, first) as s:
        assert await s.using(Item).get(name=f"c{first}") is None


async def test_missing_script_is_loaded_again_on_the_slot_owner(backend, cluster_servers):
    owner = cluster_servers.owner_port(keys.cluster_prefix(TableReference(Item, INSTANCE, 1)))
    with redis.Redis(port=owner) as node:
        node.script_flush()
        assert node.script_exists(COMMIT_SCRIPT.sha) == [False]
    async with backend.session(INSTANCE, 1) as s:
        row = Item.new_row()
        row.name, row.time = "after", 2
        await s.using(Item).insert(row)
    async with backend.session(INSTANCE, 1) as s:
        assert (await s.using(Item).get(name="after")).time == 2
        assert len(await s.using(Item).range(time=(0, 10))) == 1


async def test_meta_keys_work_on_whichever_node_owns_them(backend, cluster_servers):
    maint = backend.maintenance()
    owners = set()
    for comp in (Item, Keyed, Counter):
        ref = TableReference(comp, INSTANCE, 1)
        owners.add(cluster_servers.owner_port(keys.meta_key(ref)))
        meta = await maint.read_meta(ref)
        assert meta is not None and meta.cluster_id == 1
        await maint.write_meta(ref)
        with pytest.raises(RaceCondition):
            await maint.create_table(ref)
    assert len(owners) >= 2, "the test components' meta keys should spread over nodes"


async def test_two_system_clusters_on_different_nodes_commit_concurrently(backend, cluster_servers):
    ids = cluster_ids_on_distinct_nodes(cluster_servers, 2)
    owners = {cluster_servers.owner_port(keys.cluster_prefix(TableReference(Item, INSTANCE, c))) for c in ids}
    assert len(owners) == 2
    for cid in ids:
        await create_cluster_table(backend, Counter, cid)

    async def bump(cid: int, times: int) -> None:
        for _ in range(times):
            while True:
                try:
                    async with backend.session(f"i{cid}", cid) as s:
                        repo = s.using(Counter)
                        row = await repo.get(key="hits")
                        if row is None:
                            row = Counter.new_row()
                            row.key, row.value = "hits", 1
                            await repo.insert(row)
                        else:
                            row.value += 1
                            await repo.update(row)
                    break
                except RaceCondition:
                    await asyncio.sleep(0)

    await asyncio.gather(*(bump(cid, 20) for cid in ids for _ in range(3)))
    for cid in ids:
        async with backend.session(f"i{cid}", cid) as s:
            assert (await s.using(Counter).get(key="hits")).value == 60


async def test_change_events_of_every_node_reach_one_feed(backend, cluster_servers):
    ids = cluster_ids_on_distinct_nodes(cluster_servers, 3)
    refs = [await create_cluster_table(backend, Counter, cid) for cid in ids]
    feed = backend.change_feed()
    try:
        for ref in refs:
            await feed.subscribe(backend.change_channel(ref))
        for cid in ids:
            async with backend.session(f"i{cid}", cid) as s:
                row = Counter.new_row()
                row.key = f"k{cid}"
                await s.using(Counter).insert(row)
        # every node's event arrives (a duplicate is harmless: refreshes coalesce)
        want, got = {backend.change_channel(ref) for ref in refs}, set()
        while got != want:
            event = await feed.get(timeout=5)
            assert event is not None, f"change events of {want - got} did not arrive"
            got.add(event.channel)
        assert got == want
    finally:
        await feed.close()


async def test_drop_table_deletes_rows_of_every_cluster_id_on_every_node(backend, cluster_servers):
    ids = cluster_ids_on_distinct_nodes(cluster_servers, 3)
    maint = backend.maintenance()
    # rows left behind under old cluster ids (as after a cluster change), on every node
    for cid in ids:
        async with backend.session(INSTANCE, cid) as s:
            for i in range(3):
                row = Item.new_row()
                row.name, row.time = f"n{cid}-{i}", i
                await s.using(Item).insert(row)
    spread = set()
    for port in (n.port for n in cluster_servers.nodes):
        async with aioredis.Redis(port=port) as node:
            if [k async for k in node.scan_iter(match=f"{INSTANCE}:Item:{{CLU*")]:
                spread.add(port)
    assert len(spread) == 3
    assert await maint.drop_table(TableReference(Item, INSTANCE, ids[0])) == 3
    for port in (n.port for n in cluster_servers.nodes):
        async with aioredis.Redis(port=port) as node:
            assert [k async for k in node.scan_iter(match=f"{INSTANCE}:Item:{{CLU*")] == []
    assert await maint.read_meta(TableReference(Item, INSTANCE, ids[0])) is None


# -- the backend behaviour suite, on the cluster -------------------------------------------

from tests.backend.test_concurrency import *  # noqa: E402,F403
from tests.backend.test_events import *  # noqa: E402,F403
from tests.backend.test_maintenance import *  # noqa: E402,F403
from tests.backend.test_range import *  # noqa: E402,F403
from tests.backend.test_session import *  # noqa: E402,F403
