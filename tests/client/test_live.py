"""Live subscriptions of the Python client against a real server process."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hetu.client import CallFailed, Change, ConnectionClosed, LiveRange, LiveRow
from tests.client.conftest import connect
from tests.server.conftest import ServerProcess
from tests.server.server_app import Board
from tests.waiting import wait_until


async def collect(live, n, timeout=5.0) -> list[Change]:
    """The next ``n`` changes of ``live``."""
    changes = []

    async def run():
        async for change in live:
            changes.append(change)
            if len(changes) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return changes


async def test_range_turns_pushes_into_insert_update_delete(server):
    watcher, writer = await connect(server), await connect(server)
    try:
        live = await watcher.range("Board", "owner", 700, 700, limit=10)
        assert isinstance(live, LiveRange) and live.rows == {} and live.sub_id
        seen = {"insert": [], "update": [], "delete": []}
        live.on_insert(lambda row: seen["insert"].append(row))
        live.on_update(lambda row, old: seen["update"].append((row["note"], old["note"])))
        live.on_delete(lambda old: seen["delete"].append(old["id"]))
        changes = asyncio.create_task(collect(live, 3))
        await asyncio.sleep(0)  # the iteration is registered
        row_id = await writer.call("post", 700, 1, "new")
        await wait_until(lambda: row_id in live.rows)
        await writer.call("edit", row_id, 2, "edited")
        await wait_until(lambda: live.rows[row_id]["note"] == "edited")
        await writer.call("remove", row_id)
        got = await changes
        assert [(c.kind, c.id) for c in got] == [("insert", row_id), ("update", row_id), ("delete", row_id)]
        assert got[0].row["note"] == "new" and got[0].old is None
        assert got[1].row["score"] == 2 and got[1].old["score"] == 1
        assert got[2].row is None and got[2].old["note"] == "edited"
        assert live.rows == {}
        assert [r["id"] for r in seen["insert"]] == [row_id]
        assert seen["update"] == [("edited", "new")]
        assert seen["delete"] == [row_id]
    finally:
        await watcher.close()
        await writer.close()


async def test_range_window_evicts_and_gives_a_typed_recarray(server):
    client = await connect(server)
    try:
        a = await client.call("post", 701, 5003, "a")
        b = await client.call("post", 701, 5002, "b")
        live = await client.range(Board, "score", 5000, 5999, limit=2)
        assert set(live.rows) == {a, b}
        changes = asyncio.create_task(collect(live, 2))
        await asyncio.sleep(0)
        c = await client.call("post", 701, 5001, "c")  # enters the window, pushes `a` out
        got = await changes
        assert sorted((ch.kind, ch.id) for ch in got) == sorted([("insert", c), ("delete", a)])
        array = live.recarray()
        assert isinstance(array, np.recarray) and array.dtype == Board.new_rows(0).dtype
        assert list(array.score) == [5001, 5002] and list(array.note) == ["c", "b"]
        assert len(live) == 2
    finally:
        await client.close()


async def test_recarray_without_the_component_class_infers_fields(server):
    client = await connect(server)
    try:
        await client.call("post", 702, 7, "x")
        live = await client.range("Board", "owner", 702, 702)
        array = live.recarray()
        assert list(array.owner) == [702] and list(array.note) == ["x"]
    finally:
        await client.close()


async def test_get_follows_one_row(server):
    client = await connect(server)
    try:
        row_id = await client.call("post", 703, 1, "one")
        live = await client.get(Board, "id", row_id)
        assert isinstance(live, LiveRow) and live.row["note"] == "one"
        assert await client.get("Board", "id", 12345) is None  # no such row
        changes = asyncio.create_task(collect(live, 2))
        await asyncio.sleep(0)
        await client.call("edit", row_id, 9, "two")
        await wait_until(lambda: live.row is not None and live.row["note"] == "two")
        await client.call("remove", row_id)
        got = await changes
        assert [c.kind for c in got] == ["update", "delete"]
        assert live.row is None and live.recarray().shape == (0,)
    finally:
        await client.close()


async def test_async_callbacks_run_and_failing_callbacks_do_not_stop_pushes(server):
    client = await connect(server)
    try:
        live = await client.range("Board", "owner", 704, 704)
        seen = []

        async def slow(row):
            await asyncio.sleep(0.01)
            seen.append(row["note"])

        live.on_insert(lambda row: 1 / 0)  # logged, not raised
        live.on_insert(slow)
        await client.call("post", 704, 1, "p")
        await wait_until(lambda: seen == ["p"])
        await client.call("post", 704, 2, "q")
        await wait_until(lambda: seen == ["p", "q"])
    finally:
        await client.close()


async def test_same_query_gives_the_same_object_and_unsubscribe_ends_it(server):
    client = await connect(server)
    try:
        first = await client.range("Board", "owner", 705, 705)
        again = await client.range("Board", "owner", 705, 705)
        assert first is again
        ended = asyncio.create_task(collect(first, 99))
        await asyncio.sleep(0)
        await first.unsubscribe()
        assert await asyncio.wait_for(ended, 2) == []  # the iteration ended
        assert first.closed
        watch = await client.range("Board", "owner", 705, 706)  # another query, still open
        await client.call("post", 705, 1, "after")
        await wait_until(lambda: len(watch.rows) == 1, 5, "the push to the open subscription")
        await client.call("post", 707, 0, "sync")  # a round trip: frames written before its reply are in
        assert first.rows == {}  # no pushes after unsub
        fresh = await client.range("Board", "owner", 705, 705)
        assert fresh is not first and len(fresh.rows) == 1
    finally:
        await client.close()


async def test_closing_ends_iterations_and_calls_fail_cleanly(server):
    client = await connect(server)
    live = await client.range("Board", "owner", 706, 706)
    iteration = asyncio.create_task(collect(live, 99, timeout=30))
    await asyncio.sleep(0)
    await client.close()
    assert await asyncio.wait_for(iteration, 2) == []  # ended rather than hanging
    assert live.closed
    with pytest.raises(ConnectionClosed):
        await client.call("post", 706, 1)


async def test_bad_component_arguments(server, tmp_path):
    client = await connect(server)
    try:
        with pytest.raises(TypeError, match="component"):
            await client.range(object(), "id", 0, 1)
    finally:
        await client.close()
    debug = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'dbg.db'}", debug=True)
    try:
        client = await connect(debug)
        with pytest.raises(CallFailed):
            await client.range("NoSuchComponent", "id", 0, 1)
        assert await client.call("post", 707, 1) > 0  # the connection stays usable
        await client.close()
    finally:
        debug.stop()


async def test_connect_errors_are_clear():
    from hetu.client import HeTuClient
    from tests.conftest import free_port

    with pytest.raises(ConnectionClosed, match="cannot connect"):
        await HeTuClient.connect(f"ws://127.0.0.1:{free_port()}/hetu/x", timeout=2)


async def test_a_wrong_auth_key_is_a_handshake_refusal(server):
    from hetu.client import ConnectionClosed, HandshakeRefused, HeTuClient

    with pytest.raises(HandshakeRefused, match="refused the handshake"):
        await HeTuClient.connect(server.url, auth_key="not the key")
    assert issubclass(HandshakeRefused, ConnectionClosed)  # code catching ConnectionClosed still works
