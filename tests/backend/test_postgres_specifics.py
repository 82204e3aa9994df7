"""What only the PostgreSQL backend has to get right: names, types, NOTIFY, processes."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import numpy as np
import pytest

import hetu
from hetu import RaceCondition
from hetu.data.backend import (
    Backend,
    ChangeEvent,
    TableReference,
    TableWrites,
    backend_type_of_url,
    create_client,
)
from hetu.data.backend.postgres import PostgresBackendClient
from hetu.data.backend.postgres.events import MAX_PAYLOAD_BYTES, split_event
from hetu.data.backend.postgres.schema import column_type, short_name, table_name
from tests.backend.conftest import (
    INSTANCE,
    Counter,
    Item,
    Keyed,
    create_tables,
    increment_from_processes,
    insert_from_another_process,
    open_backend,
)
from tests.conftest import free_port, postgres_server

ITEM = TableReference(Item, INSTANCE, 1)


@pytest.fixture
async def pg_backend():
    backend = await open_backend("postgres", "")
    await create_tables(backend, Item, Keyed, Counter)
    yield backend
    await backend.close()


async def insert_items(backend, count, prefix="r", cluster_id=1, first_time=0):
    rows = Item.new_rows(count)
    async with backend.session(INSTANCE, cluster_id) as s:
        for n, row in enumerate(rows):
            row.name, row.time = f"{prefix}{n}", first_time + n
            await s.using(Item).insert(row)
    return rows


# -- URLs and configuration ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432/db", "postgres://h/db", "POSTGRESQL://h/db"])
def test_postgres_urls_select_the_postgres_backend(url):
    assert backend_type_of_url(url) == "postgres"
    assert isinstance(create_client("postgres", url), PostgresBackendClient)


def test_the_sql_type_picks_the_backend_by_url():
    assert isinstance(Backend.from_config({"type": "sql", "master": "postgres://h/db"}).master,
                      PostgresBackendClient)
    assert type(Backend.from_config({"type": "sql", "master": "sqlite:///x.db"}).master).__name__ == (
        "SQLiteBackendClient")
    with pytest.raises(ValueError, match="postgresql://"):
        create_client("postgres", "redis://h")
    with pytest.raises(ValueError, match="sql"):
        create_client("sql", "redis://h")


def test_servants_and_pool_options_come_from_the_config():
    backend = Backend.from_config({"type": "postgres", "master": "postgresql://m/db",
                                   "servants": ["postgresql://r/db"], "max_size": 3})
    assert not backend.master.is_servant and backend.servants[0].is_servant
    assert backend.master._max_size == 3


async def test_an_unreachable_server_is_a_clear_connection_error():
    backend = Backend.from_url(f"postgresql://hetu:secret@127.0.0.1:{free_port()}/none")
    with pytest.raises(ConnectionError, match="cannot connect to PostgreSQL") as info:
        await backend.open()
    assert "secret" not in str(info.value)


async def test_a_closed_or_unopened_client_refuses_work():
    client = PostgresBackendClient("postgresql://127.0.0.1/db")
    with pytest.raises(ConnectionError, match="not open"):
        await client.get(ITEM, 1)
    await client.close()
    with pytest.raises(ConnectionError, match="closed"):
        await client.get(ITEM, 1)
    with pytest.raises(ConnectionError, match="closed"):
        await client.open()


async def test_a_servant_reads_but_never_writes(pg_backend):
    rows = await insert_items(pg_backend, 1)
    servant = PostgresBackendClient(pg_backend.master.url, is_servant=True)
    await servant.open()
    try:
        assert (await servant.get(ITEM, rows[0].id)).name == "r0"
        with pytest.raises(RuntimeError, match="replica"):
            await servant.commit([])
    finally:
        await servant.close()


# -- names -------------------------------------------------------------------------------------


def test_long_names_are_shortened_to_distinct_identifiers():
    long_ref = TableReference(Item, "i" * 80, 1)
    name = table_name(long_ref)
    assert len(name.encode()) == 63 and name == table_name(TableReference(Item, "i" * 80, 1))
    assert name != table_name(TableReference(Item, "i" * 80, 2))
    assert short_name("é" * 40) != short_name("é" * 41)
    assert all(len(short_name(n).encode()) <= 63 for n in ("x" * 64, "é" * 40, "中" * 30))


def test_change_channels_are_valid_listen_channels(pg_backend):
    long_ref = TableReference(Item, "instance-" * 10, 1)
    channel = pg_backend.change_channel(long_ref)
    assert len(channel.encode()) <= 63
    assert channel != pg_backend.change_channel(TableReference(Item, "instance-" * 10, 2))


@pytest.mark.parametrize("instance", ["a-very-long-instance-name-" * 3, "quote'back\\slash\"dq"])
async def test_long_or_odd_instance_names_work_with_events(pg_backend, instance):
    ref = TableReference(Item, instance, 1)
    await pg_backend.maintenance().create_table(ref)
    feed = pg_backend.change_feed()
    await feed.subscribe(pg_backend.change_channel(ref))
    try:
        row = Item.new_row()
        row.name, row.time = "long", 1
        async with pg_backend.session(instance, 1) as s:
            await s.using(Item).insert(row)
        event = await feed.get(timeout=5)
        assert event is not None and event.row_ids == (row.id,)
        async with pg_backend.session(instance, 1) as s:
            assert (await s.using(Item).get(name="long")).time == 1
    finally:
        await feed.close()


def define_long_fields():
    prefix = "a_field_name_that_is_much_longer_than_sixty_three_bytes_in_total_"
    body = {
        "__annotations__": {prefix + "one": np.int32, prefix + "two": np.int32},
        prefix + "one": hetu.property_field(0, unique=True),
        prefix + "two": hetu.property_field(0, index=True),
    }
    comp = type("LongFields", (hetu.BaseComponent,), body)
    return hetu.define_component(namespace="pytest_pg", force=True)(comp), prefix


async def test_long_field_names_get_distinct_columns_and_indexes(pg_backend):
    comp, prefix = define_long_fields()
    await create_tables(pg_backend, comp)
    async with pg_backend.session(INSTANCE, 1) as s:
        for n in range(3):
            row = comp.new_row()
            row[prefix + "one"], row[prefix + "two"] = n, 10 - n
            await s.using(comp).insert(row)
    async with pg_backend.session(INSTANCE, 1) as s:
        rows = await s.using(comp).range(prefix + "two", 8, 9)
        assert list(rows[prefix + "one"]) == [2, 1]
        assert (await s.using(comp).get(prefix + "one", 2))[prefix + "two"] == 8


# -- types -----------------------------------------------------------------------------------


def test_dtypes_map_to_the_narrowest_exact_sql_type():
    expected = {
        "|i1": "smallint", "<i2": "smallint", "<i4": "integer", "<i8": "bigint",
        "|u1": "smallint", "<u2": "integer", "<u4": "bigint", "<u8": "bigint",
        "<f2": "real", "<f4": "real", "<f8": "double precision", "|b1": "boolean",
        "<U8": 'text COLLATE "C"', "|S4": "bytea",
    }
    assert {k: column_type(np.dtype(k)) for k in expected} == expected
    with pytest.raises(TypeError, match="cannot be stored"):
        column_type(np.dtype("complex128"))


async def test_nan_and_infinities_round_trip(pg_backend):
    values = [np.nan, np.inf, -np.inf]
    rows = Keyed.new_rows(len(values))
    async with pg_backend.session(INSTANCE, 1) as s:
        for row, v in zip(rows, values):
            row.f = v
            await s.using(Keyed).insert(row)
    async with pg_backend.session(INSTANCE, 1) as s:
        got = [(await s.using(Keyed).get(id=row.id)).f for row in rows]
    assert np.isnan(got[0]) and got[1:] == [np.inf, -np.inf]


async def test_text_with_a_nul_character_is_refused_clearly(pg_backend):
    row = Keyed.new_row()
    row.s = "a\x00b"
    with pytest.raises(ValueError, match="Keyed.s contains a NUL"):
        async with pg_backend.session(INSTANCE, 1) as s:
            await s.using(Keyed).insert(row)


async def test_bytes_with_nuls_and_uint64_extremes_round_trip(pg_backend):
    rows = Keyed.new_rows(3)
    async with pg_backend.session(INSTANCE, 1) as s:
        for row, (b, u) in zip(rows, [(b"\x00\x01", 2**64 - 1), (b"\xff\x00\x80", 0), (b"a", 2**63)]):
            row.b, row.u = b, u
            await s.using(Keyed).insert(row)
    async with pg_backend.session(INSTANCE, 1) as s:
        got = await s.using(Keyed).range(u=(0, 2**64 - 1), limit=-1)
    assert [int(u) for u in got.u] == [0, 2**63, 2**64 - 1]
    assert list(got.b) == [b"\xff\x00\x80", b"a", b"\x00\x01"]


async def test_strings_sort_by_code_point_whatever_the_database_collation():
    try:
        url = await postgres_server().fresh_database_url("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
    except asyncpg.PostgresError as exc:
        pytest.skip(f"this PostgreSQL has no ICU collations: {exc}")
    backend = Backend.from_url(url)
    await backend.open()
    try:
        await create_tables(backend, Keyed)
        words = ["B", "a", "ab", "A", "é", "z", "Z"]
        async with backend.session(INSTANCE, 1) as s:
            for w in words:
                row = Keyed.new_row()
                row.s = w
                await s.using(Keyed).insert(row)
        async with backend.session(INSTANCE, 1) as s:
            rows = await s.using(Keyed).range(s=("A", "z"), limit=-1)
        assert list(rows.s) == sorted(w for w in words if "A" <= w <= "z")
    finally:
        await backend.close()


# -- commits -----------------------------------------------------------------------------------


async def test_unique_values_can_be_swapped_in_one_commit(pg_backend):
    a, b = await insert_items(pg_backend, 2, prefix="s")
    async with pg_backend.session(INSTANCE, 1) as s:
        repo = s.using(Item)
        ra, rb = await repo.get(id=a.id), await repo.get(id=b.id)
        ra.name = "tmp"  # a swap within the session goes through a free value
        await repo.update(ra)
        rb.name = "s0"
        await repo.update(rb)
        ra.name = "s1"
        await repo.update(ra)
    async with pg_backend.session(INSTANCE, 1) as s:
        assert (await s.using(Item).get(name="s0")).id == b.id
        assert (await s.using(Item).get(name="s1")).id == a.id


async def test_a_unique_clash_at_commit_names_the_field(pg_backend):
    await insert_items(pg_backend, 2, prefix="c")
    async with pg_backend.session(INSTANCE, 1) as a, pg_backend.session(INSTANCE, 1) as b:
        ra = await a.using(Item).get(name="c0")
        rb = await b.using(Item).get(name="c1")
        ra.time = rb.time = 9999
        await a.using(Item).update(ra)
        await b.using(Item).update(rb)
        await a.commit()
        with pytest.raises(RaceCondition, match=r"UNIQUE.*Item\.time"):
            await b.commit()


async def test_an_insert_whose_id_exists_is_a_race(pg_backend):
    (row,) = await insert_items(pg_backend, 1)
    twin = Item.new_row(id_=int(row.id))
    twin.name, twin.time = "twin", 5
    with pytest.raises(RaceCondition, match="already exists"):
        await pg_backend.master.commit([TableWrites(ITEM, inserts=[twin])])


async def test_crossed_reads_and_writes_never_deadlock(pg_backend):
    """Transactions reading A to write B and B to write A lock rows in one order."""
    a, b = await insert_items(pg_backend, 2, prefix="x")

    async def move(src, dst):
        async for attempt in pg_backend.session(INSTANCE, 1).retry(500):
            async with attempt as s:
                repo = s.using(Item)
                first = await repo.get(id=src)
                await asyncio.sleep(0)
                second = await repo.get(id=dst)
                second.qty = first.qty + 1
                await repo.update(second)

    started = time.monotonic()
    await asyncio.gather(*(move(a.id, b.id) if n % 2 else move(b.id, a.id) for n in range(20)))
    assert time.monotonic() - started < 10  # a deadlock would cost a second each


async def test_reads_of_a_table_not_created_yet_are_empty_and_a_commit_creates_it(pg_backend):
    ref = TableReference(Item, INSTANCE, 9)
    assert await pg_backend.master.get(ref, 1) is None
    await insert_items(pg_backend, 2, cluster_id=9)
    async with pg_backend.session(INSTANCE, 9) as s:
        assert len(await s.using(Item).range(time=(0, 1))) == 2
    # dropping the component's table drops every cluster's table it has
    assert await pg_backend.maintenance().drop_table(ITEM) == 0
    assert await pg_backend.master.get(ref, 1) is None
    async with pg_backend.session(INSTANCE, 9) as s:
        assert len(await s.using(Item).range(time=(0, 1))) == 0


# -- change events -------------------------------------------------------------------------------


def test_a_large_event_is_split_into_payloads_that_fit():
    event = ChangeEvent("ch", tuple(range(10**17, 10**17 + 2000)), ("name", "owner", "time"))
    parts = split_event(event)
    assert len(parts) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in parts)
    assert [r for p in parts for r in p.row_ids] == list(event.row_ids)
    assert {i for p in parts for i in p.indexes} == set(event.indexes)
    assert split_event(ChangeEvent("ch", (1, 2), ("id",))) == [ChangeEvent("ch", (1, 2), ("id",))]


def test_even_the_index_list_alone_may_be_split():
    indexes = tuple(f"index_{n:04d}_" + "x" * 50 for n in range(300))
    parts = split_event(ChangeEvent("ch", (7,), indexes), limit=1000)
    assert all(len(p.encode()) <= 1000 for p in parts)
    assert [i for p in parts for i in p.indexes] == list(indexes)
    assert [r for p in parts for r in p.row_ids] == [7]


async def test_a_commit_of_many_rows_arrives_complete(pg_backend):
    feed = pg_backend.change_feed()
    await feed.subscribe(pg_backend.change_channel(ITEM))
    try:
        rows = Item.new_rows(1200)
        for n, row in enumerate(rows):
            row.name, row.time = f"m{n}", n
        await pg_backend.master.commit([TableWrites(ITEM, inserts=list(rows))])
        got: list[int] = []
        indexes: set[str] = set()
        async with asyncio.timeout(10):
            while len(got) < len(rows):
                event = await feed.get()
                got.extend(event.row_ids)
                indexes.update(event.indexes)
        assert got == [int(r.id) for r in rows]
        assert indexes == set(Item.indexes_)
    finally:
        await feed.close()


async def test_unsubscribing_stops_delivery_and_close_is_final(pg_backend):
    feed = pg_backend.change_feed()
    channel = pg_backend.change_channel(ITEM)
    await feed.subscribe(channel)
    await feed.subscribe(channel)  # twice is once
    await insert_items(pg_backend, 1, prefix="u")
    assert await feed.get(timeout=5) is not None
    await feed.unsubscribe(channel)
    await insert_items(pg_backend, 1, prefix="v", first_time=1)
    assert await feed.get(timeout=0.3) is None
    await feed.close()
    with pytest.raises(ConnectionError):
        await feed.subscribe(channel)


async def test_a_lost_feed_connection_surfaces_from_get(pg_backend):
    feed = pg_backend.change_feed()
    await feed.subscribe(pg_backend.change_channel(ITEM))
    try:
        pid = feed._conn.get_server_pid()
        await pg_backend.master.pool.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(ConnectionError, match="lost"):
            async with asyncio.timeout(5):
                while True:
                    await feed.get(timeout=0.1)
    finally:
        await feed.close()


async def test_change_events_reach_another_process(pg_backend):
    feed = pg_backend.change_feed()
    await feed.subscribe(pg_backend.change_channel(ITEM))
    try:
        row_id = await insert_from_another_process(pg_backend.master.url)
        event = await feed.get(timeout=5)
        assert event is not None and event.row_ids == (row_id,)
    finally:
        await feed.close()


async def test_concurrent_writers_in_two_processes_lose_no_increment(pg_backend):
    async with pg_backend.session(INSTANCE, 1) as s:
        row = Counter.new_row()
        row.key = "n"
        await s.using(Counter).insert(row)
    await increment_from_processes(pg_backend.master.url)
    async with pg_backend.session(INSTANCE, 1) as s:
        assert (await s.using(Counter).get(key="n")).value == 20
