"""The health of read replicas: the state machine, the Redis probe, and the backend's
read routing against real ``redis-server --replicaof`` processes (issue 17)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import redis

from hetu.data.backend import Backend
from hetu.data.backend.redis import RedisBackendClient
from hetu.data.backend.redis.replication import master_link_id, parse_info, status_from_info
from hetu.data.backend.replica_health import ReplicaHealth, ReplicaState, ReplicationStatus
from hetu.data.backend.replica_monitor import ReplicaMonitor
from tests.conftest import RedisServer, free_port, redis_binary
from tests.waiting import wait_until

IN_SYNC = ReplicationStatus(server_id="run1", is_replica=True, link_up=True, syncing=False,
                            replid="abc", offset=100, link_id="7")
MASTER = ReplicationStatus(server_id="run0", is_replica=False, link_up=False, syncing=False,
                           replid="abc", offset=120)


def _with(**changes) -> ReplicationStatus:
    return dataclasses.replace(IN_SYNC, **changes)


# -- the state machine ------------------------------------------------------------------------


def test_a_following_replica_within_the_lag_has_no_problem():
    assert ReplicaHealth("r").problem(IN_SYNC, MASTER, lag_floor=90) is None


@pytest.mark.parametrize(("status", "lag_floor", "words"), [
    (_with(is_replica=False), None, "not a replica"),
    (_with(syncing=True), None, "sync"),
    (_with(link_up=False), None, "link to the master is down"),
    (_with(replid="other"), None, "another replication history"),
    (_with(offset=80), 90, "lags"),
])
def test_each_problem_says_what_is_wrong(status, lag_floor, words):
    assert words in ReplicaHealth("r").problem(status, MASTER, lag_floor)


@pytest.mark.parametrize(("status", "words"), [
    (_with(server_id="run2"), "restarted"),
    (_with(link_id="8"), "reconnected"),
    (_with(replid="new"), "replication id"),
    (_with(offset=50), "went back"),
])
def test_a_broken_stream_between_two_probes_is_noticed(status, words):
    health = ReplicaHealth("r")
    health.move(ReplicaState.USABLE, "in sync")
    health.confirm(IN_SYNC)
    assert health.broke_continuity(_with(offset=150)) is None  # progress is no break
    assert words in health.broke_continuity(status)


def test_the_epoch_grows_each_time_the_replica_becomes_usable():
    health = ReplicaHealth("r")
    assert health.fault_state() is ReplicaState.SYNCING  # never usable yet
    assert health.move(ReplicaState.SYNCING, "first sync")
    assert not health.move(ReplicaState.SYNCING, "still")  # no change: nothing to log
    assert health.move(ReplicaState.USABLE, "in sync") and health.epoch == 1
    assert health.fault_state() is ReplicaState.UNUSABLE
    assert health.move(ReplicaState.UNUSABLE, "detached") and not health.usable
    assert health.move(ReplicaState.USABLE, "back") and health.epoch == 2


def test_the_probe_reads_info_and_the_master_link_id():
    info = parse_info(b"# Server\r\nrun_id:r1\r\n# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n"
                      b"master_sync_in_progress:0\r\nmaster_replid:abc\r\nmaster_repl_offset:42\r\n"
                      b"# Persistence\r\nloading:0\r\nasync_loading:0\r\n")
    link = master_link_id(b"id=12 addr=127.0.0.1:6379 laddr=127.0.0.1:1 fd=8 name= flags=M\n")
    assert status_from_info(info, link) == ReplicationStatus("r1", True, True, False, "abc", 42, "12")
    assert status_from_info(dict(info, loading="1"), link).syncing


class ScriptedServer:
    """Only what the monitor asks of a client: its replication status, set by the test
    (the lag arithmetic is the monitor's own; Redis itself is exercised below)."""

    url = "redis://scripted:6379/0"

    def __init__(self, status: ReplicationStatus) -> None:
        self.status = status

    async def open(self) -> None:
        pass

    async def replication_status(self) -> ReplicationStatus:
        return self.status


async def test_a_replica_behind_the_master_by_more_than_max_lag_is_dropped():
    master, replica = ScriptedServer(MASTER), ScriptedServer(_with(offset=MASTER.offset))
    monitor = ReplicaMonitor(master, [replica], changed=lambda: None, interval=0.05, max_lag=0.2)
    health = monitor.health[replica]
    await monitor.probe_round()
    assert health.usable
    master.status = _with(is_replica=False, offset=500)  # the master moves on; the replica stays
    await monitor.probe_round()
    assert health.usable  # behind, but not for max_lag yet

    async def dropped() -> bool:
        await monitor.probe_round()
        return not health.usable

    await wait_until(dropped, 2.0, "the lag to count", pause=0.05)
    assert "lags" in health.reason
    replica.status = _with(offset=500)  # caught up
    await monitor.probe_round()
    assert health.usable and health.epoch == 2


# -- real replicas ------------------------------------------------------------------------------


def _linked(port: int) -> bool:
    with redis.Redis(port=port) as r:
        info = r.info("replication")
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")


@pytest.fixture
def master():
    server = RedisServer(redis_binary(), "--repl-diskless-sync-delay", "0")
    yield server
    server.stop()


def _backend(master: RedisServer, replica_url: str, interval: float = 0.1) -> Backend:
    return Backend(RedisBackendClient(master.url()), [RedisBackendClient(replica_url, is_servant=True)],
                   master_weight=0.0, replica_probe_interval=interval)


async def test_reads_avoid_a_replica_still_in_its_first_sync(master):
    with redis.Redis(port=master.port) as m:
        m.set("k", "v")
        m.config_set("repl-diskless-sync-delay", "2")  # the full sync waits 2 s for more replicas
    replica = RedisServer(redis_binary(), "--replicaof", "127.0.0.1", str(master.port))
    backend = _backend(master, replica.url())
    try:
        await backend.open()
        servant = backend.servants[0]
        assert backend.monitor.health[servant].state is ReplicaState.SYNCING
        assert backend.servant is backend.master and backend.master_or_servant() is backend.master
        await wait_until(lambda: backend.is_usable(servant), 10, "the first sync to complete")
        assert backend.servant is servant and backend.master_or_servant() is servant  # master_weight 0
        with redis.Redis(port=replica.port) as r:
            assert r.get("k") == b"v"
    finally:
        await backend.close()
        replica.stop()


async def test_a_replica_down_at_start_is_used_once_it_is_up(master):
    port = free_port()
    backend = _backend(master, f"redis://127.0.0.1:{port}/0")
    replica = None
    try:
        await backend.open()  # a replica that does not answer does not stop the backend
        servant = backend.servants[0]
        assert not backend.is_usable(servant) and backend.servant is backend.master
        replica = RedisServer(redis_binary(), "--replicaof", "127.0.0.1", str(master.port), port=port)
        await wait_until(lambda: backend.is_usable(servant), 10, "the replica to be probed usable")
        assert backend.usable_servants == [servant]
    finally:
        await backend.close()
        if replica is not None:
            replica.stop()


async def test_a_resync_between_two_probes_is_noticed_and_told(master):
    replica = RedisServer(redis_binary(), "--replicaof", "127.0.0.1", str(master.port))
    backend = _backend(master, replica.url(), interval=3600.0)  # probes only when the test asks
    heard: list[ReplicaState] = []
    try:
        await asyncio.to_thread(_wait_linked, replica.port)
        await backend.open()
        servant = backend.servants[0]
        assert backend.is_usable(servant) and backend.replica_epoch(servant) == 1
        backend.watch_replicas(lambda client, state: heard.append(state))
        with redis.Redis(port=replica.port) as r:
            r.execute_command("REPLICAOF", "NO", "ONE")
            r.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
        await asyncio.to_thread(_wait_linked, replica.port)
        await backend.monitor.probe_round()
        # it looks as healthy as before, but its link is new: whoever read it must read again
        assert heard == [ReplicaState.UNUSABLE, ReplicaState.USABLE]
        assert backend.replica_epoch(servant) == 2
    finally:
        await backend.close()
        replica.stop()


async def test_a_frozen_replica_is_dropped_within_the_probe_timeout(master):
    replica = RedisServer(redis_binary(), "--replicaof", "127.0.0.1", str(master.port),
                          "--enable-debug-command", "local")
    backend = _backend(master, replica.url())
    try:
        await asyncio.to_thread(_wait_linked, replica.port)
        await backend.open()
        servant = backend.servants[0]
        assert backend.is_usable(servant)
        sleeper = asyncio.create_task(asyncio.to_thread(
            lambda: redis.Redis(port=replica.port).execute_command("DEBUG", "SLEEP", 2.5)))
        started = time.monotonic()
        await wait_until(lambda: not backend.is_usable(servant), 2.0, "the frozen replica to be dropped")
        assert time.monotonic() - started < backend.monitor.timeout + backend.monitor.interval + 0.5
        assert backend.master_or_servant() is backend.master
        await sleeper
        await wait_until(lambda: backend.is_usable(servant), 5, "the replica to serve again")
    finally:
        await backend.close()
        replica.stop()


def _wait_linked(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _linked(port):
        if time.monotonic() > deadline:
            raise AssertionError("the replica did not connect to its master")
        time.sleep(0.02)
