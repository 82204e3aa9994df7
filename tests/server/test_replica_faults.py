"""Subscriptions fed by a read replica survive the replica's faults (issue 17).

A real master and ``redis-server --replicaof`` replica; server A reads through the
replica, server B writes on the master only. Whatever happens to the replica (detached
and re-attached, restarted, frozen, paused, still in its first sync), every subscriber
on A ends with exactly the master's rows within 5 s of the replica being back, with no
row inserted twice and no delete lost.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import time

import pytest
import redis

from tests.conftest import RedisServer, free_port, redis_binary
from tests.server.conftest import ServerProcess, connect
from tests.waiting import wait_until

SETTLE_SECONDS = 5.0  # a subscriber matches the master this long after the replica is back
WINDOW = 2000  # rows a subscription holds; more than any test writes
MAX_WRITES = 1500
PROBE_INTERVAL = 0.2
BIG = 2**31


class Replicated:
    """The master, its replica (restartable on the same port), server A and server B."""

    def __init__(self, tmp) -> None:
        self.binary = redis_binary()
        # a full sync starts at once instead of waiting 5 s for more replicas to join
        self.master = RedisServer(self.binary, "--repl-diskless-sync-delay", "0")
        self.replica = self._start_replica()
        self.wait_linked()
        self.a = ServerProcess(tmp, self.master.url(), BACKENDS={"default": {
            "master": self.master.url(), "servants": [self.replica.url()], "master_weight": 1e9,
            "replica_probe_interval": PROBE_INTERVAL}})
        self.b = ServerProcess(tmp, self.master.url())

    def _start_replica(self, port: int | None = None) -> RedisServer:
        return RedisServer(self.binary, "--replicaof", "127.0.0.1", str(self.master.port),
                           "--enable-debug-command", "local", port=port)

    def replica_link(self) -> redis.Redis:
        return redis.Redis(port=self.replica.port, socket_timeout=10)

    def linked(self) -> bool:
        try:
            with self.replica_link() as r:
                info = r.info("replication")
                return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
        except redis.RedisError:
            return False

    def wait_linked(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.linked():
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not (re)connect to its master")
            time.sleep(0.05)

    def restart_replica(self) -> None:
        port = self.replica.port
        self.replica.stop()
        self.replica = self._start_replica(port)

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()
        self.replica.stop()
        self.master.stop()


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    setup = Replicated(tmp_path_factory.mktemp("replica-faults"))
    yield setup
    setup.stop()


class View:
    """What one subscriber was shown: the rows, and every row's entries into the view."""

    def __init__(self, client, sub_id: str, rows: list[dict]) -> None:
        self.client, self.sub_id = client, sub_id
        self.rows = {row["id"]: row for row in rows}
        self.entered = collections.Counter(list(self.rows))
        self.lost_deletes: list[int] = []  # deletes of rows it was never shown

    def drain(self) -> None:
        while not self.client.updates.empty():
            item = self.client.updates.get_nowait()
            if item is None or item[0] != self.sub_id:
                continue
            for row_id, row in item[1].items():
                if row is None:
                    if self.rows.pop(row_id, None) is None:
                        self.lost_deletes.append(row_id)
                else:
                    if row_id not in self.rows:
                        self.entered[row_id] += 1
                    self.rows[row_id] = row

    def matches(self, truth: dict[int, dict]) -> bool:
        self.drain()
        return self.rows == truth


async def subscribe(client, owner: int) -> View:
    sub_id, rows = await client.subscribe_range("Board", "owner", owner, owner, WINDOW)
    return View(client, sub_id, rows)


async def master_rows(writer, owner: int) -> dict[int, dict]:
    """The rows the master holds, by a fresh subscription on server B (master only)."""
    sub_id, rows = await writer.subscribe_range("Board", "owner", owner, owner, WINDOW)
    await writer.unsubscribe(sub_id)
    return {row["id"]: row for row in rows}


async def converges(views: list[View], writer, owner: int, timeout: float = SETTLE_SECONDS) -> None:
    """Every view holds exactly the master's rows within ``timeout``; nothing entered twice."""
    truth = await master_rows(writer, owner)
    for view in views:
        await wait_until(lambda view=view: view.matches(truth), timeout,
                         f"subscriber {view.sub_id} to show the master's {len(truth)} rows")
        assert max(view.entered.values(), default=0) <= 1, f"a row was inserted twice: {view.entered}"
        assert not view.lost_deletes


def log_count(srv: ServerProcess, text: str) -> int:
    return srv.logs().count(text)


@pytest.fixture
async def clients(replicated):
    writer = await connect(replicated.b)
    readers = [await connect(replicated.a), await connect(replicated.a)]
    yield writer, readers
    for client in (writer, *readers):
        await client.close()
    replicated.wait_linked()


async def test_a_detached_and_reattached_replica_leaves_no_subscriber_stale(replicated, clients):
    writer, readers = clients
    owner = 1701
    kept = await writer.call("post", owner, 1, "kept")
    doomed = await writer.call("post", owner, 2, "doomed")
    views = [await subscribe(reader, owner) for reader in readers]
    await converges(views, writer, owner)
    fallbacks_before = log_count(replicated.a, "reads fall back to the master")
    returns_before = log_count(replicated.a, "reads return to it")

    with replicated.replica_link() as r:
        r.execute_command("REPLICAOF", "NO", "ONE")
    new = await writer.call("post", owner, 3, "written while detached")
    await writer.call("remove", doomed)
    await writer.call("edit", kept, 1, "edited while detached")
    with replicated.replica_link() as r:
        r.execute_command("REPLICAOF", "127.0.0.1", str(replicated.master.port))
    await asyncio.to_thread(replicated.wait_linked)

    await converges(views, writer, owner)
    assert new in views[0].rows and doomed not in views[0].rows
    assert views[0].rows[kept]["note"] == "edited while detached"
    await wait_until(lambda: log_count(replicated.a, "reads return to it") == returns_before + 1,
                     SETTLE_SECONDS, "the replica to serve again")
    assert log_count(replicated.a, "reads fall back to the master") == fallbacks_before + 1  # once, not per probe
    assert "full refresh of every subscription" in replicated.a.logs()

    # and the feed through the replica works again afterwards
    later = await writer.call("post", owner, 4, "after")
    await converges(views, writer, owner)
    assert later in views[1].rows


async def test_a_replica_restarted_during_writes_leaves_no_subscriber_stale(replicated, clients):
    writer, readers = clients
    owner = 1702
    views = [await subscribe(reader, owner) for reader in readers]
    written: list[int] = []
    stop = asyncio.Event()

    async def write() -> None:
        while not stop.is_set() and len(written) < MAX_WRITES:
            written.append(await writer.call("post", owner, len(written), "during restart"))
            if len(written) % 3 == 0:
                await writer.call("remove", written[-2])

    task = asyncio.create_task(write())
    try:
        await wait_until(lambda: len(written) >= 5, 10, "writes before the restart")
        await asyncio.to_thread(replicated.replica.stop)
        at_stop = len(written)
        await wait_until(lambda: len(written) >= at_stop + 10, 10, "writes while the replica is down")
        replicated.replica = await asyncio.to_thread(replicated._start_replica, replicated.replica.port)
        at_start = len(written)
        await wait_until(lambda: len(written) >= at_start + 10, 10, "writes while the replica resyncs")
    finally:
        stop.set()
        await task
    await asyncio.to_thread(replicated.wait_linked)
    await converges(views, writer, owner)
    assert len(views[0].rows) == len(written) - len(written) // 3


async def test_a_replica_frozen_by_debug_sleep_is_bypassed_and_then_used_again(replicated, clients):
    writer, readers = clients
    owner = 1703
    views = [await subscribe(reader, owner) for reader in readers]

    def sleep_replica() -> None:
        with replicated.replica_link() as r:
            r.execute_command("DEBUG", "SLEEP", 4)

    sleeper = asyncio.create_task(asyncio.to_thread(sleep_replica))
    try:
        def frozen() -> bool:  # a raw socket: redis-py would retry the timed-out PING
            with socket.create_connection(("127.0.0.1", replicated.replica.port), timeout=1) as sock:
                sock.settimeout(0.1)
                sock.sendall(b"PING\r\n")
                try:
                    return not sock.recv(16)
                except TimeoutError:
                    return True

        await wait_until(lambda: asyncio.to_thread(frozen), 5, "the replica to freeze")
        inserted = [await writer.call("post", owner, i, "while frozen") for i in range(3)]
        await writer.call("remove", inserted[0])
        # the subscribers get them from the master while the replica still sleeps
        await converges(views, writer, owner, timeout=3.0)
        assert not sleeper.done()
    finally:
        await sleeper
    await asyncio.to_thread(replicated.wait_linked)
    after = await writer.call("post", owner, 9, "after the freeze")
    await converges(views, writer, owner)
    assert after in views[0].rows


async def test_a_replica_paused_by_client_pause_leaves_no_subscriber_stale(replicated, clients):
    writer, readers = clients
    owner = 1704
    first = await writer.call("post", owner, 1, "first")
    views = [await subscribe(reader, owner) for reader in readers]
    with replicated.replica_link() as r:
        r.execute_command("CLIENT", "PAUSE", 2500, "ALL")
    resumed_at = time.monotonic() + 2.5
    await writer.call("post", owner, 2, "while paused")
    await writer.call("remove", first)
    await converges(views, writer, owner, timeout=max(resumed_at - time.monotonic(), 0) + SETTLE_SECONDS)
    assert first not in views[0].rows


async def test_a_server_on_a_replica_that_never_synced_serves_the_masters_rows(replicated, clients,
                                                                                 tmp_path):
    writer, _ = clients
    owner = 1705
    rows = [await writer.call("post", owner, i, "before") for i in range(3)]
    # a fresh replica of a master that is not up: it answers, from an empty keyspace
    fresh = RedisServer(replicated.binary, "--replicaof", "127.0.0.1", str(free_port()))
    server = None
    try:
        server = ServerProcess(tmp_path, replicated.master.url(), BACKENDS={"default": {
            "master": replicated.master.url(), "servants": [fresh.url()], "master_weight": 0.0,
            "replica_probe_interval": PROBE_INTERVAL}})
        assert "is not usable yet" in server.logs()
        reader = await connect(server)
        try:
            view = await subscribe(reader, owner)
            assert sorted(view.rows) == sorted(rows)  # the master's rows, not the empty replica's
            # transactions read the master meanwhile too (master_weight 0 would pick the replica)
            await reader.call("edit", rows[0], 0, "edited through the new server")
            await converges([view], writer, owner)
            assert view.rows[rows[0]]["note"] == "edited through the new server"

            with redis.Redis(port=fresh.port) as r:
                assert r.dbsize() == 0
                r.execute_command("REPLICAOF", "127.0.0.1", str(replicated.master.port))

            def synced() -> bool:
                with redis.Redis(port=fresh.port) as r:
                    return r.info("replication")["master_link_status"] == "up"

            await wait_until(lambda: asyncio.to_thread(synced), 20, "the fresh replica's first sync")
            later = await writer.call("post", owner, 8, "after the sync")
            await converges([view], writer, owner)
            assert later in view.rows
            await wait_until(lambda: "is in sync" in server.logs(), SETTLE_SECONDS, "the replica to serve")
            await writer.call("remove", later)
            await converges([view], writer, owner)
        finally:
            await reader.close()
    finally:
        if server is not None:
            server.stop()
        fresh.stop()
