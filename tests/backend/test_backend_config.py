"""Backend construction from URLs and config, and the master/servant read split."""

from __future__ import annotations

import pytest

from hetu.data.backend import Backend, backend_type_of_url
from hetu.data.backend.redis import RedisBackendClient
from tests.backend.conftest import INSTANCE, Item, create_tables
from tests.conftest import redis_server


@pytest.mark.parametrize(
    "url, kind",
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://h/1", "redis"),
        ("valkey://h", "redis"),
        ("sqlite:///./chat.db", "sqlite"),
        ("sqlite:////tmp/x.db", "sqlite"),
    ],
)
def test_url_scheme_selects_the_backend(url, kind):
    assert backend_type_of_url(url) == kind


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported database URL"):
        backend_type_of_url("mongodb://h")
    with pytest.raises(ValueError, match="unknown backend type"):
        Backend.from_config({"type": "Cassandra", "master": "redis://h"})
    with pytest.raises(ValueError, match="master"):
        Backend.from_config({"type": "Redis"})


def test_config_builds_master_and_servants():
    backend = Backend.from_config(
        {"type": "Redis", "master": "redis://127.0.0.1:1/0",
         "servants": ["redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"], "master_weight": 2.5}
    )
    assert isinstance(backend.master, RedisBackendClient) and not backend.master.is_servant
    assert [s.is_servant for s in backend.servants] == [True, True]
    assert backend.master_weight == 2.5
    assert backend.monitor.interval == 0.5 and backend.monitor.max_lag == 1.0  # the defaults


def test_replica_probe_keys_come_from_the_config():
    config = {"type": "Redis", "master": "redis://127.0.0.1:1/0", "servants": ["redis://127.0.0.1:2/0"]}
    backend = Backend.from_config(dict(config, replica_probe_interval=0.25, replica_max_lag="3"))
    assert backend.monitor.interval == 0.25 and backend.monitor.max_lag == 3.0
    assert backend.usable_servants == []  # not probed yet: no reads from it
    assert Backend.from_config(dict(config, replica_probe_interval=0)).monitor is None
    with pytest.raises(ValueError, match="replica_max_lag"):
        Backend.from_config(dict(config, replica_max_lag=0))


def test_without_servants_every_read_goes_to_the_master():
    backend = Backend.from_url("redis://127.0.0.1:1/0")
    assert backend.servant is backend.master
    assert all(backend.master_or_servant() is backend.master for _ in range(20))


def test_master_weight_splits_transactional_reads():
    # probing off: the replicas count as usable without a server to ask
    backend = Backend.from_config(
        {"type": "Redis", "master": "redis://127.0.0.1:1/0", "servants": ["redis://127.0.0.1:2/0"],
         "master_weight": 0.0, "replica_probe_interval": 0}
    )
    assert all(backend.master_or_servant() is backend.servants[0] for _ in range(50))
    backend = Backend(backend.master, backend.servants, master_weight=1.0, replica_probe_interval=0)
    picks = {id(backend.master_or_servant()) for _ in range(200)}
    assert picks == {id(backend.master), id(backend.servants[0])}


async def test_session_reads_from_a_servant_and_commits_on_the_master():
    url = redis_server("redis").url(3)
    master = RedisBackendClient(url)
    servant = RedisBackendClient(url, is_servant=True)
    # the "replica" is the master itself, which its probes would reject: probing off
    backend = Backend(master, [servant], master_weight=0.0, replica_probe_interval=0)
    await backend.open()
    await master.redis.flushdb()
    await create_tables(backend, Item)
    reads = []
    original = servant.get

    async def counting_get(ref, row_id):
        reads.append(row_id)
        return await original(ref, row_id)

    servant.get = counting_get
    try:
        row = Item.new_row()
        row.name, row.time = "r", 1
        async with backend.session(INSTANCE, 1) as s:
            await s.using(Item).insert(row)
        async with backend.session(INSTANCE, 1) as s:
            assert (await s.using(Item).get(id=row.id)).name == "r"
        assert reads == [row.id]
        with pytest.raises(RuntimeError, match="replica"):
            await servant.commit([])
    finally:
        await backend.close()


def test_subscriptions_read_only_from_health_probed_replicas():
    """A servant whose replication cannot be probed (a PostgreSQL standby here; a Redis
    Cluster's replicas likewise) serves transactional reads, where a stale read fails
    its commit's version check, but not subscriptions: a lag nothing watches would leave
    subscribers stale. With probing turned off, the operator vouches for every replica."""
    config = {"master": "postgresql://m/db", "servants": ["postgresql://r/db"], "master_weight": 0.0}
    probed = Backend.from_config(config)
    assert not probed.servants[0].probes_replication
    assert probed.servant is probed.master
    assert probed.master_or_servant() is probed.servants[0]
    unprobed = Backend.from_config({**config, "replica_probe_interval": 0})
    assert unprobed.servant is unprobed.servants[0]
