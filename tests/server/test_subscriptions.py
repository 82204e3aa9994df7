"""Subscriptions over real sockets: initial data, pushes, permissions, caps, processes."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from hetu.client import ConnectionClosed
from tests.conftest import postgres_server, redis_server
from tests.server.conftest import ServerProcess, connect

BIG = 2**63 - 1


async def next_delta(client, sub_id, until=None, timeout=3.0):
    """The next push for ``sub_id`` (for which ``until(delta)`` holds, when given).

    Pushes carry current rows, so a push caused by an earlier write may show up
    first; ``until`` skips those.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = await client.next_update(deadline - time.monotonic())
        if item is None:
            break
        if item[0] == sub_id and (until is None or until(item[1])):
            return item[1]
    raise AssertionError(f"no (matching) update for {sub_id}")


def has(row_id, **fields):
    """A delta predicate: the row is present with these field values."""
    return lambda d: d.get(row_id) is not None and all(d[row_id][k] == v for k, v in fields.items())


def gone(row_id):
    return lambda d: row_id in d and d[row_id] is None


async def no_delta(client, sub_id, wait=0.3):
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        item = await client.next_update(left)
        if item is None:
            return
        assert item[0] != sub_id, f"unexpected update {item}"


@pytest.fixture
async def pair(server):
    writer, reader = await connect(server), await connect(server)
    yield writer, reader
    await writer.close()
    await reader.close()


async def test_range_subscription_sees_inserts_quickly(pair):
    writer, reader = pair
    owner = 101
    sub_id, rows = await reader.subscribe_range("Board", "owner", owner, owner, 100)
    assert sub_id == f"Board.owner[{owner}:{owner}:1][:100]" and rows == []
    started = time.perf_counter()
    row_id = await writer.call("post", owner, 5, "hi")
    delta = await next_delta(reader, sub_id, has(row_id))
    assert time.perf_counter() - started < 0.5
    assert delta == {row_id: {"id": row_id, "owner": owner, "score": 5, "note": "hi"}}


async def test_updates_moves_and_deletes(pair):
    writer, reader = pair
    owner = 102
    row_id = await writer.call("post", owner, 10, "a")
    sub_id, rows = await reader.subscribe_range("Board", "score", 0, 50, 100)
    assert row_id in {r["id"] for r in rows}
    await writer.call("edit", row_id, 10, "changed")  # not the indexed field
    await next_delta(reader, sub_id, has(row_id, note="changed"))
    await writer.call("edit", row_id, 20, "changed")  # indexed, still in range
    await next_delta(reader, sub_id, has(row_id, score=20))
    await writer.call("edit", row_id, 99, "gone")  # out of range
    await next_delta(reader, sub_id, gone(row_id))
    await writer.call("edit", row_id, 30, "back")
    await next_delta(reader, sub_id, has(row_id, score=30))
    await writer.call("remove", row_id)
    await next_delta(reader, sub_id, gone(row_id))


async def test_get_subscription_follows_its_row(pair):
    writer, reader = pair
    row_id = await writer.call("post", 103, 1, "x")
    sub_id, row = await reader.subscribe_get("Board", "id", row_id)
    assert sub_id == f"Board.id[{row_id}:None:1][:1]" and row["note"] == "x"
    await writer.call("edit", row_id, 2, "y")
    await next_delta(reader, sub_id, has(row_id, note="y"))
    await writer.call("remove", row_id)
    assert await next_delta(reader, sub_id, gone(row_id)) == {row_id: None}
    assert await reader.subscribe_get("Board", "id", row_id) == (None, None)


async def test_limit_window_evicts_the_last_row(pair):
    writer, reader = pair
    owner = 104
    ids = [await writer.call("post", owner, s) for s in (10, 20, 30)]
    sub_id, rows = await reader.subscribe_range("Board", "score", 10, 30, 3)
    assert [r["id"] for r in rows] == ids
    new = await writer.call("post", owner, 15)
    delta = await next_delta(reader, sub_id, has(new, score=15))
    assert delta[ids[2]] is None


async def test_duplicate_subscriptions_share_one_id_and_unsub_has_no_reply(pair):
    writer, reader = pair
    first, _ = await reader.subscribe_range("Board", "owner", 105, 105, 10)
    second, _ = await reader.subscribe_range("Board", "owner", 105, 105, 10)
    assert first == second
    await reader.unsubscribe(first)
    await writer.call("post", 105, 1)
    await no_delta(reader, first)
    assert await reader.call("login", 1) == {"id": 1}  # the stream is still in step


async def test_a_burst_arrives_in_order_ending_with_the_last_value(pair):
    writer, reader = pair
    row_id = await writer.call("post", 106, 0, "")
    sub_id, _ = await reader.subscribe_get("Board", "id", row_id)
    await asyncio.gather(*(writer.call("edit", row_id, n, f"v{n}") for n in range(30)))
    deltas = []
    while (item := await reader.next_update(0.5)) is not None:
        if item[0] == sub_id:
            deltas.append(item[1])
    assert deltas and deltas[-1][row_id]["note"] == "v29"
    # at most one push per change; how many are merged depends on timing (the calls of
    # one connection commit one after the other), test_fanout.py checks the merging itself
    assert len(deltas) <= 30
    notes = [int(d[row_id]["note"][1:]) for d in deltas]
    assert notes == sorted(set(notes))  # in commit order, none twice


async def test_owner_rows_reach_only_their_owner(server):
    alice, bob, anon = await connect(server), await connect(server), await connect(server)
    try:
        await alice.call("login", 201)
        await bob.call("login", 202)
        assert await anon.subscribe_range("Secret", "owner", 0, BIG, 100) == (None, [])
        a_sub, _ = await alice.subscribe_range("Secret", "owner", 0, BIG, 100)
        b_sub, _ = await bob.subscribe_range("Secret", "owner", 0, BIG, 100)
        await alice.call("write_secret", "for alice")
        delta = await next_delta(alice, a_sub)
        assert [v["text"] for v in delta.values()] == ["for alice"]
        await no_delta(bob, b_sub)
        await bob.call("write_secret", "for bob")
        assert [v["text"] for v in (await next_delta(bob, b_sub)).values()] == ["for bob"]
        await no_delta(alice, a_sub)
    finally:
        for c in (alice, bob, anon):
            await c.close()


async def test_release_mode_closes_on_unknown_components(server):
    client = await connect(server)
    with pytest.raises(ConnectionClosed):
        await client.subscribe_range("Nope", "id", 0, 1)
    await client.close()


async def test_debug_mode_answers_bad_subs_and_enforces_caps(debug_server):
    client = await connect(debug_server)
    try:
        assert await client.subscribe_range("Nope", "id", 0, 1) == ("fail", [
            {"id": 0, "info": "DEBUG MODE: server rejected the request."}])
        ids = [await client.call("post", 300, n) for n in range(3)]
        assert (await client.subscribe_get("Board", "id", ids[0]))[0] is not None
        assert (await client.subscribe_get("Board", "id", ids[1]))[0] is not None
        # over MAX_ROW_SUBSCRIPTION=2: the reply, then an extra BAD_SUBS frame (as in
        # HeTu); it answers no request, so the call sent right behind keeps its own reply
        (sub_id, _), reply = await asyncio.gather(
            client.subscribe_get("Board", "id", ids[2]), client.call("login", 1)
        )
        assert sub_id is not None
        assert reply == {"id": 1}
        assert client.unsolicited == [["sub", "fail", [{"id": 0, "info": "DEBUG MODE: server rejected the request."}]]]
    finally:
        await client.close()


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("srvcap")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'srv.db'}", MAX_ROW_SUBSCRIPTION=2, MAX_INDEX_SUBSCRIPTION=1)
    yield srv
    srv.stop()


async def test_release_mode_closes_a_connection_over_its_row_subscription_cap(capped_server):
    client, bystander = await connect(capped_server), await connect(capped_server)
    try:
        ids = [await client.call("post", 310, n) for n in range(3)]
        watched, _ = await bystander.subscribe_get("Board", "id", ids[0])
        for row_id in ids[:2]:
            assert (await client.subscribe_get("Board", "id", row_id))[0] is not None
        with pytest.raises(ConnectionClosed):  # the third is one over MAX_ROW_SUBSCRIPTION=2
            await client.subscribe_get("Board", "id", ids[2])
            await client.call("post", 310, 9)  # the reply may come before the close
        # the others keep being served, and see writes
        assert await bystander.call("post", 311, 1) > 0
        assert "exceeded its subscription caps" in capped_server.logs()
    finally:
        await client.close()
        await bystander.close()


async def test_release_mode_closes_a_connection_over_its_range_subscription_cap(capped_server):
    client = await connect(capped_server)
    try:
        assert (await client.subscribe_range("Board", "owner", 0, 10, 5))[0] is not None
        # the same range again returns the existing id and does not count twice
        assert (await client.subscribe_range("Board", "owner", 0, 10, 5))[0] is not None
        with pytest.raises(ConnectionClosed):  # a second range: over MAX_INDEX_SUBSCRIPTION=1
            await client.subscribe_range("Board", "owner", 20, 30, 5)
            await client.call("post", 312, 1)
    finally:
        await client.close()


async def test_thousand_subscribers_all_receive_an_insert(server):
    clients = [await connect(server) for _ in range(20)]
    try:
        subs = []
        for client in clients:
            for n in range(50):
                sub_id, _ = await client.subscribe_range("Board", "owner", 400, 400 + n, 1000)
                subs.append((client, sub_id))
        row_id = await clients[0].call("post", 400, 1, "all")
        got = 0
        for client in clients:
            seen = set()
            while len(seen) < 50:
                item = await client.next_update(5)
                assert item is not None
                if row_id in item[1]:
                    seen.add(item[0])
            got += len(seen)
        assert got == 1000
    finally:
        for client in clients:
            await client.close()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def shared_db(request, tmp_path):
    """One database for several server processes: a SQLite file, a Redis server or a
    PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if request.param == "postgres":
        return await postgres_server().fresh_schema_url()
    url = redis_server("redis").url()
    redis.Redis.from_url(url).flushdb()
    return url


async def test_writes_through_one_server_process_reach_subscribers_of_another(tmp_path, shared_db):
    db = shared_db
    first = ServerProcess(tmp_path, db)
    second = ServerProcess(tmp_path, db)
    try:
        reader = await connect(first)
        writer = await connect(second)
        sub_id, _ = await reader.subscribe_range("Board", "owner", 500, 500, 10)
        row_id = await writer.call("post", 500, 1, "cross")
        await next_delta(reader, sub_id, has(row_id, note="cross"))
        await writer.call("remove", row_id)
        await next_delta(reader, sub_id, lambda d: row_id in d and d[row_id] is None)
        await reader.close()
        await writer.close()
        assert "worker id 0" in first.logs() and "worker id 1" in second.logs()
    finally:
        first.stop()
        second.stop()


async def test_two_workers_lease_distinct_ids_and_share_pushes(tmp_path, shared_db):
    srv = ServerProcess(tmp_path, shared_db, workers=2)
    try:
        logs = srv.logs()
        assert "worker id 0" in logs and "worker id 1" in logs
        clients = [await connect(srv) for _ in range(6)]
        subs = [(c, (await c.subscribe_range("Board", "owner", 600, 600, 10))[0]) for c in clients]
        row_id = await clients[0].call("post", 600, 1, "w")
        for client, sub_id in subs:
            await next_delta(client, sub_id, has(row_id, note="w"))
        await clients[1].call("edit", row_id, 2, "edited")
        for client, sub_id in subs:
            await next_delta(client, sub_id, has(row_id, score=2, note="edited"))
        for client in clients:
            await client.close()
    finally:
        srv.stop()


async def test_owner_permission_lost_and_gained_on_push(server):
    alice, bob = await connect(server), await connect(server)
    try:
        await alice.call("login", 211)
        await bob.call("login", 212)
        a_sub, _ = await alice.subscribe_range("Secret", "owner", 0, BIG, 100)
        b_sub, _ = await bob.subscribe_range("Secret", "owner", 0, BIG, 100)
        await alice.call("write_secret", "gift")
        delta = await next_delta(alice, a_sub)
        (row_id,) = delta
        await alice.call("give_secret", "gift", 212)
        assert await next_delta(alice, a_sub, gone(row_id)) == {row_id: None}  # lost
        await next_delta(bob, b_sub, has(row_id, owner=212, text="gift"))  # gained
    finally:
        await alice.close()
        await bob.close()
