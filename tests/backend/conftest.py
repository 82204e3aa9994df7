"""Backends and test components shared by the backend behaviour tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import redis

import hetu
from hetu.data.backend import Backend, TableReference
from tests.conftest import BACKEND_KINDS, postgres_server, redis_server

INSTANCE = "pytest"


@hetu.define_component(namespace="pytest", permission=hetu.Permission.OWNER, force=True)
class Item(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    model: np.float32 = hetu.property_field(0.0, index=True)
    qty: np.int16 = hetu.property_field(111)
    level: np.int8 = hetu.property_field(1)
    time: np.int64 = hetu.property_field(0, unique=True)
    name: "<U8" = hetu.property_field("", unique=True)
    used: bool = hetu.property_field(False, index=True)
    friend: np.int8 = hetu.property_field(0)


@hetu.define_component(namespace="pytest", force=True)
class Keyed(hetu.BaseComponent):
    """Index keys of every kind the encoding must order."""

    i: np.int32 = hetu.property_field(0, index=True)
    u: np.uint64 = hetu.property_field(0, index=True)
    f: np.float64 = hetu.property_field(0.0, index=True)
    s: str = hetu.property_field("", dtype="U16", index=True)
    b: bytes = hetu.property_field(b"", dtype="S8", index=True)


@hetu.define_component(namespace="pytest", force=True, volatile=True)
class Counter(hetu.BaseComponent):
    key: "<U16" = hetu.property_field("", unique=True)
    value: np.int64 = hetu.property_field(0)


async def open_backend(kind: str, sqlite_url: str) -> Backend:
    if kind == "sqlite":
        backend = Backend.from_url(sqlite_url)
    elif kind == "postgres":
        # a warm pool, so concurrent sessions really overlap (as on Redis and SQLite)
        url = await postgres_server().fresh_schema_url()
        backend = Backend.from_config({"type": "postgres", "master": url, "min_size": 5})
    else:
        url = redis_server(kind).url()
        redis.Redis.from_url(url).flushdb()
        backend = Backend.from_url(url)
    await backend.open()
    return backend


async def create_tables(backend: Backend, *comps, cluster_id: int = 1) -> None:
    maint = backend.maintenance()
    for comp in comps:
        await maint.create_table(TableReference(comp, INSTANCE, cluster_id))


@pytest.fixture(params=BACKEND_KINDS)
async def backend(request, sqlite_url):
    be = await open_backend(request.param, sqlite_url)
    await create_tables(be, Item, Keyed, Counter)
    yield be
    await be.close()


@pytest.fixture
def session(backend):
    """A factory of sessions on the test instance, cluster 1."""
    return lambda: backend.session(INSTANCE, 1)


@pytest.fixture
async def filled(backend, session):
    """25 Items: owner 10, time 110+i, name Itm{10+i}, qty 999, model i*0.1."""
    async with session() as s:
        repo = s.using(Item)
        for i in range(25):
            row = Item.new_row()
            row.owner = 10
            row.time = 110 + i
            row.name = f"Itm{10 + i}"
            row.qty = 999
            row.model = i * 0.1
            await repo.insert(row)
    return backend


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from hetu.common.snowflake_id import SnowflakeID
    from hetu.data.backend import Backend
    from tests.backend.conftest import INSTANCE, Item

    async def main():
        SnowflakeID().init(7, 0)
        backend = Backend.from_url({url!r})
        await backend.open()
        async with backend.session(INSTANCE, 1) as s:
            row = Item.new_row()
            row.name, row.time = "fromproc", 77
            await s.using(Item).insert(row)
        print(int(row.id))
        await backend.close()

    asyncio.run(main())
    """
)


async def insert_from_another_process(url: str) -> int:
    """Insert an ``Item`` (name "fromproc", time 77) from a separate Python process
    connected to ``url``; returns its id."""
    script = _WRITER.format(root=str(Path(__file__).parents[2]), url=url)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


_INCREMENTER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from hetu.common.snowflake_id import SnowflakeID
    from hetu.data.backend import Backend
    from tests.backend.conftest import INSTANCE, Counter

    async def bump(backend):
        async for attempt in backend.session(INSTANCE, 1).retry(200):
            async with attempt as s:
                c = await s.using(Counter).get(key="n")
                c.value += 1
                await s.using(Counter).update(c)

    async def main():
        SnowflakeID().init(int(sys.argv[1]), 0)
        backend = Backend.from_url({url!r})
        await backend.open()
        await asyncio.gather(*(bump(backend) for _ in range({tasks})))
        await backend.close()

    asyncio.run(main())
    """
)


async def increment_from_processes(url: str, worker_ids=(11, 12), tasks: int = 10) -> None:
    """Increment the ``Counter`` row with key "n" from one process per worker id, each
    running ``tasks`` concurrent transactions (retried on conflicts)."""
    script = _INCREMENTER.format(root=str(Path(__file__).parents[2]), url=url, tasks=tasks)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)], stderr=subprocess.PIPE, text=True)
             for w in worker_ids]
    for proc in procs:
        _, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err
