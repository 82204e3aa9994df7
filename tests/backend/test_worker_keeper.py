"""Worker-id leases in the backend, and the clock-rollback guard they carry."""

from __future__ import annotations

import asyncio
import random

import pytest

from hetu.common.snowflake_id import SnowflakeID, id_timestamp_ms, id_worker, now_ms
from hetu.data.backend import TableReference
from hetu.data.backend.worker_keeper import LeaseLost, WorkerKeeper, WorkerLease
from tests.backend.conftest import INSTANCE
from tests.waiting import wait_until


@pytest.fixture
async def leases(backend):
    await backend.maintenance().create_table(TableReference(WorkerLease, INSTANCE, 0))
    return backend


def keeper(backend, node):
    return WorkerKeeper(backend, INSTANCE, 0, node_id=node)


async def lease_row(backend, worker_id):
    async with backend.session(INSTANCE, 0) as s:
        return await s.using(WorkerLease).get(id=worker_id)


async def steal(backend, worker_id):
    """Another process takes the lease (as after this one failed to renew in time)."""
    async with backend.session(INSTANCE, 0) as s:
        row = await s.using(WorkerLease).get(id=worker_id)
        row.node_id = "thief"
        await s.using(WorkerLease).update(row)


async def test_processes_get_distinct_worker_ids(leases):
    a, b = keeper(leases, "a"), keeper(leases, "b")
    assert await a.acquire() == 0
    assert await b.acquire() == 1
    assert id_worker(SnowflakeID().next_id()) == 1
    assert (await lease_row(leases, 0)).node_id == "a"


async def test_concurrent_acquires_never_share_an_id(leases):
    keepers = [keeper(leases, f"n{i}") for i in range(8)]
    ids = await asyncio.gather(*(k.acquire() for k in keepers))
    assert sorted(ids) == list(range(8))


async def test_released_id_is_reused(leases):
    a = keeper(leases, "a")
    await a.acquire()
    await a.release()
    assert (await lease_row(leases, 0)).expires_at == 0
    assert await keeper(leases, "b").acquire() == 0


async def test_expired_lease_of_a_dead_process_is_taken_over(leases):
    await keeper(leases, "dead").acquire()  # never renewed nor released
    async with leases.session(INSTANCE, 0) as s:
        row = await s.using(WorkerLease).get(id=0)
        row.expires_at = now_ms() - 1
        await s.using(WorkerLease).update(row)
    assert await keeper(leases, "new").acquire() == 0
    assert (await lease_row(leases, 0)).node_id == "new"


async def test_ids_continue_after_the_last_timestamp_of_the_lease(leases):
    future = now_ms() + 60_000  # the previous holder's clock was ahead of ours
    async with leases.session(INSTANCE, 0) as s:
        row = WorkerLease.new_row(id_=0)
        row.node_id, row.expires_at, row.last_timestamp = "old", 0, future
        await s.using(WorkerLease).insert(row)
    await keeper(leases, "new").acquire()
    assert id_timestamp_ms(SnowflakeID().next_id()) >= future


async def test_renew_extends_the_lease_and_records_the_last_timestamp(leases):
    a = keeper(leases, "a")
    await a.acquire()
    before = (await lease_row(leases, 0)).expires_at
    acquired_by = now_ms()
    await wait_until(lambda: now_ms() > acquired_by, 1, "the clock to move on", pause=0.001)
    new_id = SnowflakeID().next_id()
    await a.renew()
    row = await lease_row(leases, 0)
    assert row.expires_at > before
    assert row.last_timestamp >= id_timestamp_ms(new_id)


async def test_renew_detects_a_stolen_lease(leases):
    a = keeper(leases, "a")
    await a.acquire()
    await steal(leases, 0)
    with pytest.raises(LeaseLost):
        await a.renew()


async def test_a_lost_lease_is_replaced_by_a_new_id(leases):
    """The renewal loop must not go on using an id another process holds now."""
    a = keeper(leases, "a")
    await a.acquire()
    await steal(leases, 0)
    a.start(interval=0.02)
    try:
        await wait_until(lambda: a.worker_id not in (None, 0), 2, "a new worker id", pause=0.02)
    finally:
        await a.stop()
    assert a.worker_id == 1
    assert (await lease_row(leases, 1)).node_id == "a"
    assert id_worker(SnowflakeID().next_id()) == 1


async def test_a_short_lease_is_renewed_often_enough(leases):
    a = WorkerKeeper(leases, INSTANCE, 0, node_id="a", lease_seconds=0.3)
    await a.acquire()
    a.start()
    try:
        for _ in range(6):
            await asyncio.sleep(0.1)
            assert (await lease_row(leases, 0)).expires_at > now_ms()
    finally:
        await a.stop()
    with pytest.raises(ValueError, match="more than 0 seconds"):
        WorkerKeeper(leases, INSTANCE, 0, lease_seconds=0)


async def test_background_renewal_runs_until_stopped(leases):
    a = keeper(leases, "a")
    await a.acquire()
    first = (await lease_row(leases, 0)).expires_at
    a.start(interval=0.02)

    async def renewed() -> bool:
        return (await lease_row(leases, 0)).expires_at > first

    await wait_until(renewed, 5, "a renewal", pause=0.02)
    await a.stop()



async def test_stop_always_returns_even_when_cancelled_mid_request(leases):
    """Regression: redis-py can swallow the cancellation of stop() in the middle of a
    request, and the renewal loop then ran forever (it hung CI). Stop at random points."""
    rng = random.Random(7)
    for i in range(150):
        k = keeper(leases, f"n{i}")
        await k.acquire()
        k.start(interval=0.0005)
        renewer = k._task
        await asyncio.sleep(rng.random() * 0.005)
        await asyncio.wait_for(k.stop(), 10)
        assert renewer.done() and k._task is None  # the loop ended, nothing left running
        if i % 10 == 0:  # and the lease is no longer renewed (its expiry stays put)
            # a renewal already handed to the database may still land: SQLite runs it in
            # its own thread, which cancelling the task does not recall; give it 10 ms
            await asyncio.sleep(0.01)
            expiry = (await lease_row(leases, k.worker_id)).expires_at
            await asyncio.sleep(0.01)  # 20 renewal intervals
            assert (await lease_row(leases, k.worker_id)).expires_at == expiry
        await k.release()
