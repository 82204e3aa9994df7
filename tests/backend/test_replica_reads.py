"""Transactional reads from a real Redis replica: a stale read never commits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

import hetu
from hetu.data.backend import Backend, TableReference
from hetu.data.backend.redis import RedisBackendClient
from tests.backend.conftest import INSTANCE
from tests.conftest import RedisServer, redis_binary


@hetu.define_component(namespace="pytest_rep", force=True)
class Wallet(hetu.BaseComponent):
    gold: np.int64 = hetu.property_field(0)


@pytest.fixture
def master_and_replica():
    binary = redis_binary()
    master = RedisServer(binary)
    replica = RedisServer(binary, "--replicaof", "127.0.0.1", str(master.port))
    link = redis.Redis(port=replica.port)
    deadline = time.monotonic() + 20
    while link.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not connect"
        time.sleep(0.05)
    yield master, replica
    replica.stop()
    master.stop()


async def test_a_stale_replica_read_is_caught_and_retried_on_the_master(master_and_replica):
    master, replica = master_and_replica
    # every transactional read goes to the replica (master_weight 0); no probe after the first
    # one, so the detached replica keeps serving and its stale read reaches the commit
    backend = Backend(RedisBackendClient(master.url()), [RedisBackendClient(replica.url(), is_servant=True)],
                      master_weight=0.0, replica_probe_interval=3600.0)
    await backend.open()
    try:
        ref = TableReference(Wallet, INSTANCE, 1)
        await backend.maintenance().create_table(ref)
        row = Wallet.new_row()
        row.gold = 10
        async with backend.session(INSTANCE, 1) as s:
            await s.using(Wallet).insert(row)
        redis.Redis(port=master.port).execute_command("WAIT", 1, 5000)
        redis.Redis(port=replica.port).execute_command("REPLICAOF", "NO", "ONE")  # frozen: stale from now
        async with backend.session(INSTANCE, 1, only_master=True) as s:
            fresh = await s.using(Wallet).get(id=row.id)
            fresh.gold = 50
            await s.using(Wallet).update(fresh)

        attempts = []
        session = backend.session(INSTANCE, 1)
        async for attempt in session.retry(3):
            async with attempt as s:
                attempts.append(s.reader is backend.servants[0])
                wallet = await s.using(Wallet).get(id=row.id)
                wallet.gold += 1
                await s.using(Wallet).update(wallet)

        assert attempts == [True, False]  # the stale replica read failed its commit; the retry read the master
        async with backend.session(INSTANCE, 1, only_master=True) as s:
            assert (await s.using(Wallet).get(id=row.id)).gold == 51  # 50 + 1: the stale 10 never won
    finally:
        await backend.close()
