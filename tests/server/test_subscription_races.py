"""Nothing falls between a subscription's initial query and its registration."""

from __future__ import annotations

import asyncio

import pytest

from hetu.data.backend import Backend, TableReference
from hetu.data.backend.table import Table
from hetu.endpoint.context import Context
from hetu.server.state import ServerState
from hetu.server.subscription import ConnectionSubscriptions
from tests.backend.conftest import Item, create_tables
from tests.conftest import BACKEND_KINDS


class FakeConnection:
    """What ConnectionSubscriptions needs from a connection: a context and push()."""

    def __init__(self, table) -> None:
        self.ctx = Context(caller=1, connection_id=1, address="test", group="admin", user_data={},
                           timestamp=0.0, request=None, systems=None)
        self.ctx.configure([], [], 100, 100)
        self.frames: asyncio.Queue = asyncio.Queue()
        self.instance = "pytest"
        self.server = ServerState(config={}, namespace="pytest", pipeline=None, debug=1,
                                  table_managers={"pytest": type("T", (), {"get_table": lambda _, n: table})()})

    async def push(self, frame, name=None):
        await self.frames.put(frame)

    def reader_ctx(self):
        return self.ctx

    async def login_settled(self):
        pass


@pytest.mark.parametrize("kind", BACKEND_KINDS)
async def test_a_commit_during_the_initial_query_is_delivered(kind, sqlite_url):
    from tests.backend.conftest import open_backend

    backend: Backend = await open_backend(kind, sqlite_url)
    await create_tables(backend, Item)
    table = Table(TableReference(Item, "pytest", 1), backend)
    conn = FakeConnection(table)
    subs = ConnectionSubscriptions(conn)
    client = backend.servant
    original = client.range
    late = Item.new_row()
    late.name, late.time, late.owner = "late", 1, 5

    async def range_then_commit(*args, **kwargs):
        rows = await original(*args, **kwargs)  # the query has run...
        async with backend.session("pytest", 1) as s:  # ...and now someone commits
            await s.using(Item).insert(late)
        return rows

    client.range = range_then_commit
    try:
        await subs.handle_sub(["sub", "Item", "range", "owner", 0, 10, 10, False, True])
        reply = await conn.frames.get()
        assert reply[0] == "sub" and reply[2] == []
        client.range = original
        update = await asyncio.wait_for(conn.frames.get(), 5)
        assert update[0] == "updt" and update[2][late.id]["name"] == "late"
    finally:
        client.range = original
        await subs.close()
        for broker in conn.server.brokers.values():
            await broker.close()
        await backend.close()
