"""Subscription fan-out per shape, on every backend: exactly the changes, once per shape.

Real backends and their real change feeds; the connections are in-process stand-ins
that record the frames they are sent (the wire itself is covered by
test_subscriptions.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time

import msgpack
import pytest

from hetu.data.backend import Backend, ChangeEvent, TableReference
from hetu.data.backend.table import Table
from hetu.endpoint.context import Context
from hetu.server.login import ConnectionLogin
from hetu.server.shapes import RangeShape
from hetu.server.state import ServerState
from hetu.server.subscription import ConnectionSubscriptions
from tests.backend.conftest import INSTANCE, Item, create_tables, open_backend
from tests.backend.test_redis_cluster import open_cluster_backend, redis_cluster, stop_redis_cluster
from tests.conftest import BACKEND_KINDS
from tests.waiting import wait_until

KINDS = [*BACKEND_KINDS, "cluster"]
# Conn.nothing_more's marker rows: an owner and times outside every range a test subscribes to
MARK_OWNER = 2**40
MARK_TIME = 2**62
_marks = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _stop_cluster_at_session_end():
    yield
    stop_redis_cluster()


class Tables:
    def __init__(self, table: Table) -> None:
        self.table = table

    def get_table(self, name):
        return self.table if name == self.table.comp_cls.name_ else None


class Conn:
    """What ConnectionSubscriptions needs from a connection; records what it is sent."""

    def __init__(self, server: ServerState, caller: int = 1, admin: bool = True) -> None:
        self.server = server
        self.instance = INSTANCE
        self.ctx = Context(caller=caller, connection_id=caller, address="test", group="admin" if admin else "guest",
                           user_data={}, timestamp=0.0, request=None, systems=None)
        self.ctx.configure([], [], 1000, 1000)
        self.frames: asyncio.Queue = asyncio.Queue()
        self.login = ConnectionLogin(self)  # never logs in: pushes are filtered for ctx
        self.subs = ConnectionSubscriptions(self)

    async def push(self, frame, name=None) -> None:
        self.push_nowait(frame)

    def push_nowait(self, frame, name=None) -> None:
        if isinstance(frame, bytes):
            frame = msgpack.unpackb(frame, strict_map_key=False)
        self.frames.put_nowait(frame)

    async def sub_range(self, index: str, left, right, limit: int, desc: bool = False) -> tuple:
        await self.subs.handle_sub(["sub", "Item", "range", index, left, right, limit, desc, True])
        frame = self.frames.get_nowait()  # the reply is queued before the request returns
        assert frame[0] == "sub", frame
        return frame[1], frame[2]

    async def updt(self, timeout: float = 5.0) -> dict:
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        assert frame[0] == "updt", frame
        return frame[2]

    async def nothing_more(self) -> None:
        """Assert that no push is on its way to this connection."""
        await all_pushed(self.server)
        assert self.frames.empty(), f"unexpected push {self.frames.get_nowait()}"


async def all_pushed(server: ServerState) -> None:
    """Return once every change committed so far has been fanned out to every connection.

    A marker row is committed after them, and a watcher waits for its push. The fan-out
    handles events in commit order, in one task, delivering each shape's delta
    synchronously, the watcher's shape (the newest) last: once the watcher has the
    marker, every earlier push has been delivered.
    """
    mark = next(_marks)
    watcher = Conn(server, caller=MARK_OWNER)
    sub_id, initial = await watcher.sub_range("time", MARK_TIME + mark, MARK_TIME + mark, 1)
    assert initial == []
    row = Item.new_row()
    row.owner, row.time, row.name = MARK_OWNER, MARK_TIME + mark, f"mark{mark}"
    async with server.table_managers[INSTANCE].table.backend.session(INSTANCE, 1) as s:
        await s.using(Item).insert(row)
    assert await watcher.updt() == {int(row.id): wire(row)}
    await watcher.subs.unsubscribe(sub_id)


@pytest.fixture(params=KINDS)
async def world(request, sqlite_url):
    if request.param == "cluster":
        backend = await open_cluster_backend(redis_cluster())
    else:
        backend = await open_backend(request.param, sqlite_url)
    await create_tables(backend, Item)
    table = Table(TableReference(Item, INSTANCE, 1), backend)
    server = ServerState(config={}, namespace="pytest", pipeline=None, debug=1,
                         table_managers={INSTANCE: Tables(table)})
    yield backend, server
    for broker in server.brokers.values():
        await broker.close()
    await backend.close()


def fanout_of(server: ServerState, backend: Backend):
    (fanout,) = server.broker(backend).fanouts.values()
    return fanout


def wire(row) -> dict:
    return {k: v for k, v in zip(row.dtype.names, row.item()) if k != "_version"}


async def insert(backend: Backend, owner: int, stamp: int, qty: int = 1):
    row = Item.new_row()
    row.owner, row.time, row.name, row.qty = owner, stamp, f"n{stamp}", qty
    async with backend.session(INSTANCE, 1) as s:
        await s.using(Item).insert(row)
    return row


async def update(backend: Backend, row_id: int, **fields):
    async with backend.session(INSTANCE, 1) as s:
        repo = s.using(Item)
        row = await repo.get(id=row_id)
        for name, value in fields.items():
            setattr(row, name, value)
        await repo.update(row)
    async with backend.session(INSTANCE, 1) as s:
        return await s.using(Item).get(id=row_id)


async def delete(backend: Backend, row_id: int) -> None:
    async with backend.session(INSTANCE, 1) as s:
        repo = s.using(Item)
        await repo.get(id=row_id)
        repo.delete(row_id)


async def five_rows(backend: Backend) -> list:
    return [await insert(backend, 7, stamp) for stamp in range(1, 6)]


async def test_a_full_window_gets_exactly_new_row_in_and_last_row_out(world):
    backend, server = world
    rows = await five_rows(backend)
    conn = Conn(server)
    sub_id, initial = await conn.sub_range("time", 0, 100, 3, desc=True)
    assert [r["time"] for r in initial] == [5, 4, 3]
    new = await insert(backend, 7, 6)
    assert await conn.updt() == {int(new.id): wire(new), int(rows[2].id): None}
    await conn.nothing_more()


async def test_a_delete_in_a_full_window_refills_it(world):
    backend, server = world
    rows = await five_rows(backend)
    conn = Conn(server)
    await conn.sub_range("time", 0, 100, 3, desc=True)
    await delete(backend, int(rows[3].id))
    assert await conn.updt() == {int(rows[3].id): None, int(rows[1].id): wire(rows[1])}
    await conn.nothing_more()


async def test_only_changes_inside_the_window_are_pushed(world):
    backend, server = world
    rows = await five_rows(backend)
    conn = Conn(server)
    await conn.sub_range("time", 0, 100, 3, desc=True)
    await update(backend, int(rows[0].id), qty=50)  # outside the window
    changed = await update(backend, int(rows[4].id), qty=60)
    assert await conn.updt() == {int(rows[4].id): wire(changed)}
    moved = await update(backend, int(rows[3].id), time=0)  # leaves; the window refills
    assert await conn.updt() == {int(moved.id): None, int(rows[1].id): wire(rows[1])}
    await conn.nothing_more()


async def test_a_replayed_event_and_a_gap_push_nothing(world):
    backend, server = world
    rows = await five_rows(backend)
    conn = Conn(server)
    await conn.sub_range("time", 0, 100, 3, desc=True)
    fanout = fanout_of(server, backend)
    fanout.notify(ChangeEvent(fanout.channel, tuple(int(r.id) for r in rows), ("time",)))
    fanout.notify(ChangeEvent.missed(fanout.channel))
    await conn.nothing_more()
    changed = await update(backend, int(rows[4].id), qty=61)  # and the stream goes on
    assert await conn.updt() == {int(rows[4].id): wire(changed)}


async def test_a_commit_during_the_initial_query_is_pushed_once(world):
    backend, server = world
    conn = Conn(server)
    client = server.broker(backend).client
    original = client.range
    late = []

    async def range_then_commit(*args, **kwargs):
        rows = await original(*args, **kwargs)  # the query has run...
        if not late:
            late.append(await insert(backend, 7, 42))  # ...and now someone commits
        return rows

    client.range = range_then_commit
    try:
        sub_id, initial = await conn.sub_range("time", 0, 100, 10)
    finally:
        client.range = original
    assert initial == []
    assert await conn.updt() == {int(late[0].id): wire(late[0])}
    await conn.nothing_more()


async def test_a_row_written_before_subscribing_is_in_the_reply_and_not_pushed_again(world):
    backend, server = world
    first = Conn(server)
    await first.sub_range("time", 0, 100, 10)  # the shape exists and listens
    row = await insert(backend, 7, 9)
    second = Conn(server, caller=2)
    _, initial = await second.sub_range("time", 0, 100, 10)  # maybe before the event arrives
    assert initial == [wire(row)]
    assert await first.updt() == {int(row.id): wire(row)}
    await second.nothing_more()


async def test_one_shape_for_many_owners_each_sees_only_its_rows(world):
    backend, server = world
    conns = [Conn(server, caller=owner, admin=False) for owner in (1, 2, 3, 4)]
    for conn in conns:
        _, initial = await conn.sub_range("owner", 0, 100, 100)
        assert initial == []
    fanout = fanout_of(server, backend)
    (shape,) = fanout.range_shapes.values()
    assert isinstance(shape, RangeShape) and len(shape.subscribers) == 4
    rows = {owner: await insert(backend, owner, 100 + owner) for owner in (1, 2, 3, 4)}
    for conn in conns:
        got = {}
        while len(got) < 1:
            got.update(await conn.updt())
        assert got == {int(rows[conn.ctx.caller].id): wire(rows[conn.ctx.caller])}
    given = await update(backend, int(rows[1].id), owner=2)
    assert await conns[0].updt() == {int(given.id): None}
    assert await conns[1].updt() == {int(given.id): wire(given)}
    for conn in conns:
        await conn.nothing_more()


async def test_subscribers_of_one_row_share_its_read(world):
    backend, server = world
    row = await insert(backend, 7, 77)
    conns = [Conn(server, caller=n) for n in (1, 2, 3)]
    for conn in conns:
        await conn.subs.handle_sub(["sub", "Item", "get", "id", int(row.id)])
        assert conn.frames.get_nowait()[2] == wire(row)
    client = server.broker(backend).client
    reads = []
    original = client.get_many

    async def counted(ref, ids):
        reads.append(list(ids))
        return await original(ref, ids)

    client.get_many = counted
    try:
        changed = await update(backend, int(row.id), qty=3)
        for conn in conns:
            assert await conn.updt() == {int(row.id): wire(changed)}
    finally:
        client.get_many = original
    assert reads == [[int(row.id)]]


async def _held_reads(server, backend):
    """Make the fan-out's row reads wait for the returned event."""
    client = server.broker(backend).client
    gate, original, rounds = asyncio.Event(), client.get_many, []

    async def held(ref, ids):
        rounds.append(len(ids))
        await gate.wait()
        return await original(ref, ids)

    client.get_many = held
    return gate, rounds, lambda: setattr(client, "get_many", original)


async def all_queued(fanout, rounds: list[int], inserts: int) -> None:
    """Wait until the events of ``inserts`` new rows have all reached ``fanout``: the
    held first round reads some of the rows, the others' events wait behind it."""
    await wait_until(lambda: rounds and rounds[0] + len(fanout._events) == inserts,
                     what=f"the events of {inserts} inserts to reach the fan-out")


async def test_a_burst_of_inserts_is_merged(world):
    backend, server = world
    conn = Conn(server)
    await conn.sub_range("time", 0, 10_000, 100)
    gate, rounds, restore = await _held_reads(server, backend)
    try:
        rows = [await insert(backend, 7, 1000 + n) for n in range(50)]
        await all_queued(fanout_of(server, backend), rounds, 50)  # the first round still waits
        gate.set()
        got: dict = {}
        updts = 0
        while len(got) < 50:
            got.update(await conn.updt())
            updts += 1
    finally:
        restore()
    assert got == {int(r.id): wire(r) for r in rows}
    assert updts <= 2 and len(rounds) <= 2, (updts, rounds)
    await conn.nothing_more()


async def test_a_subscriber_that_unsubscribes_mid_burst_gets_nothing_more(world):
    backend, server = world
    leaving, staying = Conn(server, caller=1), Conn(server, caller=2)
    sub_id, _ = await leaving.sub_range("time", 0, 10_000, 100)
    await staying.sub_range("time", 0, 10_000, 100)
    gate, rounds, restore = await _held_reads(server, backend)
    try:
        rows = [await insert(backend, 7, 2000 + n) for n in range(10)]
        await all_queued(fanout_of(server, backend), rounds, 10)
        await leaving.subs.unsubscribe(sub_id)
        gate.set()
        got: dict = {}
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            got.update(await staying.updt())
    finally:
        restore()
    assert got == {int(r.id): wire(r) for r in rows}
    await leaving.nothing_more()
    assert fanout_of(server, backend).range_shapes  # the shape stays for the other one


class View:
    """What one subscriber holds: its initial rows with every push applied. A push that
    changes nothing it holds is a spurious push."""

    def __init__(self, conn: Conn, initial: list[dict]) -> None:
        self.conn = conn
        self.rows = {r["id"]: r for r in initial}
        self.spurious: list = []

    def drain(self) -> None:
        while not self.conn.frames.empty():
            frame = self.conn.frames.get_nowait()
            assert frame[0] == "updt", frame
            for row_id, row in frame[2].items():
                if row is None:
                    if row_id not in self.rows:
                        self.spurious.append((row_id, None))
                    self.rows.pop(row_id, None)
                else:
                    if self.rows.get(row_id) == row:
                        self.spurious.append((row_id, row))
                    self.rows[row_id] = row


async def test_subscribers_joining_during_random_writes_end_with_exactly_the_range(world):
    """Writers insert, update (moving rows in the index) and delete while subscribers
    join at random moments; afterwards every subscriber holds exactly what the range
    holds, and no push repeated what a subscriber already had. Several rounds: the
    interleavings differ from run to run."""
    import random

    backend, server = world
    rng = random.Random(14)
    for round_ in range(3):
        views, truth = await _random_round(backend, server, rng, 10_000 * (round_ + 1))
        for n, view in enumerate(views):
            view.drain()
            assert view.rows == truth[view.conn.ctx.caller % 2 == 1], f"round {round_}, subscriber {n}"
            assert view.spurious == [], f"round {round_}, subscriber {n}"
            await view.conn.subs.close()


async def _random_round(backend: Backend, server: ServerState, rng, base: int) -> tuple[list[View], dict]:
    """One round: the subscribers' views, and the range read at the end (by direction)."""
    rows = [await insert(backend, 7, base + n) for n in range(8)]
    views: list[View] = []

    async def writer() -> None:
        for _ in range(120):
            op = rng.random()
            if op < 0.35 or not rows:
                rows.append(await insert(backend, 7, base + rng.randrange(100, 9_000)))
            elif op < 0.7:
                row = rng.choice(rows)
                moved = rng.random() < 0.5
                fields = {"time": base + rng.randrange(100, 9_000)} if moved else {"qty": rng.randrange(1000)}
                try:
                    await update(backend, int(row.id), **fields)
                except Exception:  # the random time was taken (unique): skip it
                    pass
            else:
                row = rows.pop(rng.randrange(len(rows)))
                await delete(backend, int(row.id))

    async def subscriber(n: int) -> None:
        await asyncio.sleep(rng.random() * 0.1)  # while the writer is at it
        conn = Conn(server, caller=100 + n)  # odd callers subscribe descending
        _, initial = await conn.sub_range("time", base, base + 9_999, 5, desc=n % 2 == 1)
        views.append(View(conn, initial))

    await asyncio.gather(writer(), *(subscriber(n) for n in range(6)))
    await all_pushed(server)
    client = server.broker(backend).client
    bounds = await _bounds(base, base + 9_999)
    truth = {}
    for desc in (False, True):
        fresh = await client.range(TableReference(Item, INSTANCE, 1), "time", bounds, 5, desc)
        truth[desc] = {int(r.id): wire(r) for r in fresh}
    return views, truth


async def _bounds(low: int, high: int):
    from hetu.data.backend.bounds import normalize_bounds

    return normalize_bounds(Item, "time", low, high)
