"""HeTuSession: reconnects, logs in again and restores live subscriptions."""

from __future__ import annotations

import asyncio

import pytest

from hetu.client import CallRejected, ConnectionClosed, HeTuSession
from tests.client.conftest import connect
from tests.server.conftest import AUTH_KEY, ServerProcess
from tests.waiting import wait_until


async def test_session_survives_a_server_restart(tmp_path):
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    first = ServerProcess(tmp_path, db)
    other = ServerProcess(tmp_path, db)  # stays up: writes happen there while `first` is down
    logins = []

    async def login(client):
        logins.append(await client.call("login", 801))

    session = HeTuSession(first.url, auth_key=AUTH_KEY, on_connect=login, min_delay=0.05, max_delay=0.3)
    writer = await connect(other)
    restarted = None
    try:
        await session.start()
        assert session.connected and logins == [{"id": 801}]
        live = await session.range("Board", "owner", 800, 800, limit=10)
        kept = await session.call("post", 800, 1, "kept")
        doomed = await session.call("post", 800, 2, "doomed")
        await wait_until(lambda: set(live.rows) == {kept, doomed})
        changes = []
        live.on_insert(lambda row: changes.append(("insert", row["note"])))
        live.on_delete(lambda old: changes.append(("delete", old["note"])))

        first.stop()
        await wait_until(lambda: not session.connected)
        queued = asyncio.create_task(session.call("post", 800, 3, "queued"))  # waits for the reconnect
        await writer.call("remove", doomed)
        await writer.call("post", 800, 4, "meanwhile")
        restarted = ServerProcess(tmp_path, db, port=first.port)

        queued_id = await asyncio.wait_for(queued, 20)
        assert session.connections == 2 and logins == [{"id": 801}, {"id": 801}]
        await wait_until(lambda: len(live.rows) == 3)
        assert sorted(r["note"] for r in live.rows.values()) == ["kept", "meanwhile", "queued"]
        assert queued_id in live.rows
        assert ("delete", "doomed") in changes and ("insert", "meanwhile") in changes
        assert not live.closed and live.sub_id

        # pushes flow again on the new connection
        later = await writer.call("post", 800, 5, "later")
        await wait_until(lambda: later in live.rows)
    finally:
        await session.close()
        await writer.close()
        other.stop()
        if restarted is not None:
            restarted.stop()
    assert live.closed


async def test_a_call_in_flight_when_the_connection_drops_raises(tmp_path):
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    session = HeTuSession(srv.url, auth_key=AUTH_KEY, call_timeout=0.5, min_delay=0.05)
    try:
        await session.start()
        srv.kill()  # no goodbye
        with pytest.raises(ConnectionClosed):
            for _ in range(100):  # some calls may still be answered before the socket dies
                await session.call("post", 810, 1)
        with pytest.raises(ConnectionClosed, match="not connected"):
            await session.call("post", 810, 1)  # waits call_timeout for a reconnect
    finally:
        await session.close()
        srv.stop()


async def test_a_failing_first_login_is_raised(tmp_path):
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'b.db'}")

    async def login(client):
        await client.call("limited")
        await client.call("limited")
        await client.call("limited")  # the third in 100 s is rejected

    session = HeTuSession(srv.url, auth_key=AUTH_KEY, on_connect=login)
    try:
        with pytest.raises(CallRejected):
            await session.start()
        assert not session.connected
    finally:
        await session.close()
        srv.stop()


async def test_a_reconnect_failing_halfway_keeps_the_live_objects(tmp_path, monkeypatch):
    """A reconnect that restored one subscription and then failed must not end it: the
    next reconnect restores both, and both go on receiving pushes."""
    from hetu.client import HeTuClient

    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    session = HeTuSession(srv.url, auth_key=AUTH_KEY, min_delay=0.05, max_delay=0.2)
    writer = await connect(srv)
    real = HeTuClient._subscribe_live
    failures = []

    async def flaky(self, request, make=None, live=None):
        if live is not None and live is second and not failures:
            failures.append(request)
            raise ConnectionClosed("the connection broke while restoring")
        return await real(self, request, make, live)

    try:
        await session.start()
        first = await session.range("Board", "owner", 820, 820, limit=10)
        second = await session.range("Board", "owner", 821, 821, limit=10)
        monkeypatch.setattr(HeTuClient, "_subscribe_live", flaky)
        await session.client.ws.close()  # the session reconnects: restoring `second` fails once
        await wait_until(lambda: session.connections == 2, timeout=10)  # the failed attempt does not count
        assert failures and not first.closed and not second.closed
        a = await writer.call("post", 820, 1, "to first")
        b = await writer.call("post", 821, 1, "to second")
        await wait_until(lambda: a in first.rows and b in second.rows)
    finally:
        await session.close()
        await writer.close()
        srv.stop()


async def test_late_pushes_of_an_ended_live_object_are_dropped(tmp_path):
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    client, writer = await connect(srv), await connect(srv)
    try:
        live = await client.range("Board", "owner", 830, 830, limit=10)
        await writer.call("post", 830, 1, "before")
        await wait_until(lambda: len(live.rows) == 1)
        for n in range(5):  # each push is on its way while the live object ends
            await writer.call("post", 830, n, "late")
            await live.unsubscribe()
            live = await client.range("Board", "owner", 830, 830, limit=10)
        await live.unsubscribe()
        assert await client.next_update(0.3) is None  # nothing piles up unread
    finally:
        await client.close()
        await writer.close()
        srv.stop()
