"""A connection's push queue: order kept when it is full, and a client that never reads
is closed instead of growing the worker without bound."""

from __future__ import annotations

from hetu.server.client_connection import CLOSE, OVERFLOW_LIMIT, QUEUE_SIZE, ClientConnection, ConnState
from hetu.server.state import ServerState
from tests.waiting import wait_until


def open_connection() -> ClientConnection:
    """A connection whose socket never takes anything (no direct writes, nothing sent)."""
    server = ServerState(config={}, namespace="pytest", pipeline=None)
    conn = ClientConnection(server, ws=object(), request=None, instance="test")
    conn.state = ConnState.OPEN
    return conn


def queued(conn: ClientConnection) -> list:
    items = []
    while not conn.queue.empty():
        items.append(conn.queue.get_nowait()[0])
    return items


async def test_frames_that_do_not_fit_wait_in_order_behind_the_queue():
    conn = open_connection()
    for n in range(QUEUE_SIZE + 10):
        conn.push_nowait(["updt", "s", {n: None}])
    await conn.push(["rsp", "ok"])  # a reply goes behind the waiting pushes
    got: list = []

    def all_came_through() -> bool:  # the mover refills the queue in order as it empties
        got.extend(queued(conn))
        return len(got) == QUEUE_SIZE + 11

    await wait_until(all_came_through, 5, "every frame to pass through the queue", pause=0)
    assert [f[2] for f in got[:-1]] == [{n: None} for n in range(QUEUE_SIZE + 10)]
    assert got[-1] == ["rsp", "ok"]


async def test_a_client_that_never_reads_is_closed():
    conn = open_connection()
    for n in range(QUEUE_SIZE + OVERFLOW_LIMIT):
        conn.push_nowait(["updt", "s", {n: None}])
    assert CLOSE not in queued_copy(conn)
    conn.push_nowait(["updt", "s", {"one": "too many"}])
    assert queued(conn) == [CLOSE]  # what was queued is dropped, then the connection closes
    assert conn._overflow is None
    await wait_until(conn._overflow_task.done, 5, "the overflow task to end", pause=0)


def queued_copy(conn: ClientConnection) -> list:
    return [item[0] for item in list(conn.queue._queue)]
