"""What only the SQLite backend has to get right: files, processes, value mapping."""

from __future__ import annotations

import numpy as np
import pytest

from hetu.data.backend import Backend, TableReference
from hetu.data.backend.sqlite.client import path_of_url
from hetu.data.backend.sqlite.schema import table_name
from tests.backend.conftest import (
    INSTANCE,
    Item,
    Keyed,
    create_tables,
    increment_from_processes,
    insert_from_another_process,
)


@pytest.fixture
async def sqlite_backend(sqlite_url):
    backend = Backend.from_url(sqlite_url)
    await backend.open()
    await create_tables(backend, Item, Keyed)
    yield backend
    await backend.close()


def test_urls_map_to_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert path_of_url("sqlite:///chat.db") == str(tmp_path / "chat.db")
    assert path_of_url("sqlite:////var/data/x.db") == "/var/data/x.db"
    for bad in ("sqlite:///:memory:", "sqlite://", "sqlite:///"):
        with pytest.raises(ValueError):
            path_of_url(bad)


async def test_bytes_round_trip_exactly(sqlite_backend):
    values = [b"\x00\x01", b"\xff\xfe\x80", b"abc", b"\x01" * 8]
    async with sqlite_backend.session(INSTANCE, 1) as s:
        for v in values:
            row = Keyed.new_row()
            row.b = v
            await s.using(Keyed).insert(row)
    async with sqlite_backend.session(INSTANCE, 1) as s:
        rows = await s.using(Keyed).range(b=(b"\x00", b"\xff\xff"), limit=-1)
    assert sorted(rows.b) == sorted(values)


async def test_uint64_beyond_the_signed_range_orders_correctly(sqlite_backend):
    values = [0, 2**63 - 1, 2**63, 2**64 - 1, 5]
    async with sqlite_backend.session(INSTANCE, 1) as s:
        for v in values:
            row = Keyed.new_row()
            row.u = v
            await s.using(Keyed).insert(row)
    async with sqlite_backend.session(INSTANCE, 1) as s:
        rows = await s.using(Keyed).range(u=(2**63 - 1, 2**64 - 1), limit=-1)
    assert [int(v) for v in rows.u] == [2**63 - 1, 2**63, 2**64 - 1]


async def test_nan_is_refused_with_a_clear_error(sqlite_backend):
    row = Keyed.new_row()
    row.f = np.nan
    with pytest.raises(ValueError, match="Keyed.f is NaN"):
        async with sqlite_backend.session(INSTANCE, 1) as s:
            await s.using(Keyed).insert(row)
    async with sqlite_backend.session(INSTANCE, 1) as s:
        assert await s.using(Keyed).get(id=row.id) is None


def test_long_table_names_are_shortened_stably():
    ref = TableReference(Item, "i" * 80, 1)
    name = table_name(ref)
    assert len(name.encode()) == 63
    assert name == table_name(TableReference(Item, "i" * 80, 1))
    assert name != table_name(TableReference(Item, "i" * 80, 2))


async def test_long_table_names_work(sqlite_url):
    backend = Backend.from_url(sqlite_url)
    await backend.open()
    instance = "very-long-instance-name-" * 3
    try:
        await backend.maintenance().create_table(TableReference(Item, instance, 1))
        async with backend.session(instance, 1) as s:
            row = Item.new_row()
            row.name, row.time = "long", 1
            await s.using(Item).insert(row)
        async with backend.session(instance, 1) as s:
            assert (await s.using(Item).get(name="long")).time == 1
    finally:
        await backend.close()


async def test_change_events_reach_another_process(sqlite_backend, sqlite_url):
    feed = sqlite_backend.change_feed()
    await feed.subscribe(sqlite_backend.change_channel(TableReference(Item, INSTANCE, 1)))
    try:
        row_id = await insert_from_another_process(sqlite_url)
        event = await feed.get(timeout=5)
        assert event is not None and event.row_ids == (row_id,)
        async with sqlite_backend.session(INSTANCE, 1) as s:
            assert (await s.using(Item).get(id=row_id)).time == 77
    finally:
        await feed.close()


async def test_a_feed_does_not_replay_changes_from_before_it_subscribed(sqlite_backend):
    async with sqlite_backend.session(INSTANCE, 1) as s:
        row = Item.new_row()
        row.name, row.time = "old", 1
        await s.using(Item).insert(row)
    feed = sqlite_backend.change_feed()
    await feed.subscribe(sqlite_backend.change_channel(TableReference(Item, INSTANCE, 1)))
    try:
        assert await feed.get(timeout=0.2) is None
    finally:
        await feed.close()


async def test_concurrent_writers_in_two_processes_lose_no_increment(sqlite_backend, sqlite_url):
    from tests.backend.conftest import Counter

    await create_tables(sqlite_backend, Counter)
    async with sqlite_backend.session(INSTANCE, 1) as s:
        row = Counter.new_row()
        row.key = "n"
        await s.using(Counter).insert(row)
    await increment_from_processes(sqlite_url)
    async with sqlite_backend.session(INSTANCE, 1) as s:
        assert (await s.using(Counter).get(key="n")).value == 20


def test_many_connections_opening_a_new_file_at_once(tmp_path):
    """Regression: `PRAGMA journal_mode = WAL` on a brand-new file failed with "database
    is locked" when two workers started together (it does not wait for the busy timeout)."""
    import threading

    from hetu.data.backend.sqlite.thread_connection import connect

    for round_ in range(30):
        path = str(tmp_path / f"fresh-{round_}.db")
        barrier, errors = threading.Barrier(8), []

        def open_it(path=path, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                connect(path).execute("CREATE TABLE IF NOT EXISTS t (x)")
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"round {round_}: {errors}"
