"""Permission boundaries over real sockets, across 2 server processes on one Redis:
USER/ADMIN systems and components, OWNER rows (also after an owner change and after
the user was kicked by a second login)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from hetu.client import CallFailed, ConnectionClosed
from tests.waiting import wait_until

BIG = 2**63 - 1


async def collect(client, wait: float = 0.5) -> list[tuple[str, dict]]:
    """Every push that arrives within ``wait`` seconds."""
    pushes = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        item = await client.next_update(left)
        if item is None:
            break
        pushes.append(item)
    return pushes


async def wait_for(client, sub_id: str, until, timeout: float = 3.0) -> list[tuple[str, dict]]:
    """Pushes up to and including the first of ``sub_id`` for which ``until(delta)`` holds."""
    pushes = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        item = await client.next_update(left)
        if item is None:
            break
        pushes.append(item)
        if item[0] == sub_id and until(item[1]):
            return pushes
    raise AssertionError(f"no matching update for {sub_id}; got {pushes}")


def visible(pushes, row_id: int) -> list[dict]:
    """The row contents among ``pushes`` that showed ``row_id`` (not its removal)."""
    return [delta[row_id] for _, delta in pushes if delta.get(row_id) is not None]


def shows(row_id, **fields):
    return lambda d: d.get(row_id) is not None and all(d[row_id][k] == v for k, v in fields.items())


def hides(row_id):
    return lambda d: row_id in d and d[row_id] is None


@pytest.mark.parametrize("system, args", [("touch_profile", ()), ("write_ledger", (1,))])
async def test_anonymous_clients_cannot_call_user_or_admin_systems(cluster, system, args):
    client = await cluster.connect()
    try:
        with pytest.raises(CallFailed):
            await client.call(system, *args)
        assert await client.call("plant_secret", 1, "still connected") > 0
    finally:
        await client.close()


async def test_users_cannot_call_admin_systems(cluster):
    client = await cluster.connect(1)
    try:
        await client.call("login", 501)
        assert await client.call("touch_profile") == "ok"
        with pytest.raises(CallFailed):
            await client.call("write_ledger", 2)
    finally:
        await client.close()


@pytest.mark.parametrize("component", ["Profile", "Ledger", "Secret"])
async def test_anonymous_clients_cannot_subscribe_to_user_admin_or_owner_components(cluster, component):
    """As in the reference, a forbidden subscription is not an error: the answer is an
    empty ``["sub", None, …]`` and no subscription is made, so nothing is pushed later."""
    client, writer = await cluster.connect(0), await cluster.connect(1)
    try:
        await writer.call("login", 503)
        await writer.call("touch_profile")
        await writer.call("plant_secret", 503, "anonymous must not see")
        assert await client.subscribe_range(component, "id", 0, BIG, 10) == (None, [])
        assert await client.subscribe_get(component, "id", 1) == (None, None)
        await writer.call("plant_secret", 0, "owned by nobody")
        assert await collect(client, 0.3) == []
        assert await client.call("plant_secret", 1, "still connected") > 0
    finally:
        await client.close()
        await writer.close()


async def test_users_can_subscribe_to_user_components_but_not_admin_ones(cluster):
    client = await cluster.connect(1)
    try:
        await client.call("login", 502)
        await client.call("touch_profile")
        sub_id, rows = await client.subscribe_range("Profile", "owner", 502, 502, 10)
        assert sub_id is not None and [r["owner"] for r in rows] == [502]
        assert await client.subscribe_range("Ledger", "entry", 0, BIG, 10) == (None, [])
    finally:
        await client.close()


@pytest.mark.parametrize("system, args", [("touch_profile", ()), ("write_ledger", (3,))])
async def test_release_servers_close_the_connection_of_a_forbidden_call(release_cluster, system, args):
    client = await release_cluster.connect()
    try:
        with pytest.raises(ConnectionClosed):
            await client.call(system, *args)
        await client.wait_closed()
    finally:
        await client.close()


@pytest.mark.parametrize("component", ["Profile", "Ledger", "Secret"])
async def test_release_servers_answer_a_forbidden_subscription_with_nothing(release_cluster, component):
    client = await release_cluster.connect()
    try:
        assert await client.subscribe_range(component, "id", 0, BIG, 10) == (None, [])
        assert await client.subscribe_get(component, "id", 1) == (None, None)
    finally:
        await client.close()


async def test_owner_rows_reach_only_their_owner_also_when_the_owner_changes(cluster):
    reader, writer = await cluster.connect(0), await cluster.connect(1)  # different processes
    try:
        await reader.call("login", 601)
        sub_id, rows = await reader.subscribe_range("Secret", "owner", 0, BIG, 100)
        assert all(r["owner"] == 601 for r in rows)
        theirs = await writer.call("plant_secret", 602, "theirs")
        mine = await writer.call("plant_secret", 601, "mine")
        pushes = await wait_for(reader, sub_id, shows(mine, text="mine"))

        await writer.call("rewrite_secret", mine, 602, "given away")
        pushes += await wait_for(reader, sub_id, hides(mine))
        await writer.call("rewrite_secret", mine, 602, "edited after leaving")
        await writer.call("rewrite_secret", theirs, 602, "edited")
        back = await writer.call("plant_secret", 601, "marker")
        pushes += await wait_for(reader, sub_id, shows(back))
        pushes += await collect(reader, 0.3)

        sub_get, row = await reader.subscribe_get("Secret", "id", theirs)
    finally:
        await reader.close()
        await writer.close()
    after_change = [r for r in visible(pushes, mine) if r["text"] != "mine"]
    print(f"\nowner change: {len(pushes)} pushes to the reader, "
          f"{len(visible(pushes, theirs))} of another user's row, "
          f"{len(after_change)} of its row after the owner changed")
    assert all(r is None or r["owner"] == 601 for _, delta in pushes for r in delta.values()), pushes
    assert visible(pushes, theirs) == []
    # a push may repeat a row unchanged (a refresh for an earlier event already showed it)
    assert {r["text"] for r in visible(pushes, mine)} == {"mine"}, pushes
    assert row is None


async def disconnects_of(client, connection_id: int, runs: int = 1, timeout: float = 5.0) -> list[int]:
    """The callers on_disconnect ran as for ``connection_id``, once it has run ``runs`` times."""

    async def found() -> list[int] | None:
        callers = await client.call("disconnects", connection_id)
        return callers if len(callers) >= runs else None

    return await wait_until(found, timeout, f"{runs} on_disconnect run(s) of connection {connection_id}", pause=0.05)


@contextlib.asynccontextmanager
async def taken_over_clients(cluster):
    """``old`` and ``writer`` on one server process, ``new`` on the other; once ``old``
    and ``new`` are closed, ``old``'s on_disconnect must have run as anonymous."""
    old, new, writer = await cluster.connect(0), await cluster.connect(1), await cluster.connect(0)
    try:
        old_conn, _ = await old.call("whoami")
        try:
            yield old, new, writer
        finally:
            await old.close()
            await new.close()
        assert await disconnects_of(writer, old_conn) == [0]
    finally:
        await writer.close()


async def test_a_kicked_connection_is_demoted_at_once(cluster):
    """Debug mode keeps a kicked connection open: it becomes anonymous as soon as the new
    login commits (no call of its own needed), its user's OWNER rows are withdrawn, none
    are pushed afterwards, its calls are refused, and it disconnects as anonymous."""
    async with taken_over_clients(cluster) as (old, new, writer):
        await old.call("login", 701)
        old_sub, _ = await old.subscribe_range("Secret", "owner", 701, 701, 100)
        before = await writer.call("plant_secret", 701, "before")
        await wait_for(old, old_sub, shows(before))

        await new.call("login", 701)  # kicks `old`, which is on the other server process
        withdrawn = await wait_for(old, old_sub, hides(before))
        new_sub, rows = await new.subscribe_range("Secret", "owner", 701, 701, 100)
        assert [r["id"] for r in rows] == [before]
        after = await writer.call("plant_secret", 701, "after")
        await wait_for(new, new_sub, shows(after))
        pushes = await collect(old, 0.5)
        print(f"\nkick: {len(visible(pushes, after))} pushes of the user's new row reached the kicked connection")
        assert visible(withdrawn + pushes, after) == []
        with pytest.raises(CallFailed):
            await old.call("plant_secret", 1, "kicked")
        with pytest.raises(CallFailed):
            await old.call("whoami")


async def test_release_servers_close_a_kicked_connection_without_waiting_for_its_next_call(release_cluster):
    old, new = await release_cluster.connect(0), await release_cluster.connect(1)
    try:
        await old.call("login", 702)
        await new.call("login", 702)
        await asyncio.wait_for(old.wait_closed(), 5)
        assert await new.call("touch_profile") == "ok"
    finally:
        await old.close()
        await new.close()


async def test_a_kicked_connection_that_leaves_before_noticing_disconnects_as_anonymous(cluster):
    """The takeover and the disconnect race: on_disconnect must not run as the user,
    which would log the user out of the new connection in most apps."""
    writer = await cluster.connect(0)
    try:
        for attempt in range(5):
            old, new = await cluster.connect(0), await cluster.connect(1)
            old_conn, _ = await old.call("whoami")
            await old.call("login", 710 + attempt)
            await new.call("login", 710 + attempt)
            await old.close()  # at once: the old connection may not have seen the event yet
            assert await disconnects_of(writer, old_conn) == [0]
            new_conn, _ = await new.call("whoami")
            await new.close()
            assert await disconnects_of(writer, new_conn) == [710 + attempt]
    finally:
        await writer.close()


def counted(key: int):
    """A delta of a Counter subscription that shows the row of ``key``."""
    return lambda d: any(row is not None and row["key"] == key for row in d.values())


async def hold_a_call(client, key: int) -> tuple[asyncio.Task, str, list]:
    """Start a ``hold`` call of ``client`` (which it ends once Counter ``key`` counts),
    subscribed to the Counter rows ``key`` to ``key + 9``; returns once the call runs:
    its task, the subscription and the pushes read meanwhile."""
    counters, _ = await client.subscribe_range("Counter", "key", key, key + 9, 10)
    held = asyncio.create_task(client.call("hold", key))
    return held, counters, await wait_for(client, counters, counted(key + 1))


async def test_a_login_taken_over_during_a_call_is_demoted_when_the_call_ends(cluster):
    """Debug mode: a takeover while a call of the old connection runs withdraws the
    user's rows at once; the call runs on as the user and is answered; then the
    connection is anonymous: its calls are refused, the pushes it may read still reach
    it, the user's rows never do, and it disconnects as anonymous."""
    async with taken_over_clients(cluster) as (old, new, writer):
        await old.call("login", 730)
        secrets, _ = await old.subscribe_range("Secret", "owner", 730, 730, 100)
        before = await writer.call("plant_secret", 730, "before")
        await wait_for(old, secrets, shows(before))

        held, counters, pushes = await hold_a_call(old, 7300)
        await new.call("login", 730)  # on the other server process
        pushes += await wait_for(old, secrets, hides(before))
        assert not held.done()
        during = await writer.call("plant_secret", 730, "during")
        await writer.call("increment", 7300)  # lets the call end
        assert await asyncio.wait_for(held, 10) == 730  # it ran to its end as the user
        with pytest.raises(CallFailed):
            await old.call("whoami")
        after = await writer.call("plant_secret", 730, "after")
        await writer.call("increment", 7302)
        pushes += await wait_for(old, counters, counted(7302))
        pushes += await collect(old, 0.5)
        assert visible(pushes, during) == [] and visible(pushes, after) == [], pushes


async def test_release_servers_close_a_connection_taken_over_during_a_call(release_cluster):
    """The running call is not answered, and on_disconnect runs as anonymous."""
    async with taken_over_clients(release_cluster) as (old, new, _):
        await old.call("login", 731)
        held, _, _ = await hold_a_call(old, 7310)
        await new.call("login", 731)
        await asyncio.wait_for(old.wait_closed(), 5)
        with pytest.raises(ConnectionClosed):
            await held


async def test_logout_withdraws_the_users_rows_and_permissions(cluster):
    client, writer = await cluster.connect(0), await cluster.connect(1)
    try:
        conn_id, _ = await client.call("whoami")
        await client.call("login", 720)
        await client.call("touch_profile")
        secret = await writer.call("plant_secret", 720, "mine")
        secret_sub, rows = await client.subscribe_range("Secret", "owner", 720, 720, 10)
        profile_sub, profiles = await client.subscribe_range("Profile", "owner", 720, 720, 10)
        assert [r["id"] for r in rows] == [secret] and len(profiles) == 1

        assert await client.call("logout") is True
        pushes = await wait_for(client, secret_sub, hides(secret))
        if not any(sub == profile_sub for sub, _ in pushes):
            pushes += await wait_for(client, profile_sub, hides(profiles[0]["id"]))
        assert await client.call("whoami") == [conn_id, 0]
        with pytest.raises(CallFailed):
            await client.call("touch_profile")
        later = await writer.call("plant_secret", 720, "after logout")
        pushes += await collect(client, 0.5)
        assert visible(pushes, later) == [] and visible(pushes, secret) == []
        assert await client.subscribe_range("Profile", "owner", 720, 720, 10) == (None, [])
        # logging in again restores what the user may read
        await client.call("login", 720)
        sub_id, rows = await client.subscribe_range("Secret", "owner", 720, 720, 10)
        assert sorted(r["id"] for r in rows) == sorted([secret, later])
    finally:
        await client.close()
        await writer.close()
