"""Change events: every commit announces the rows and indexes it touched."""

from __future__ import annotations

import asyncio

from hetu.data.backend import Backend, TableReference
from tests.backend.conftest import INSTANCE, Counter, Item

ITEM = TableReference(Item, INSTANCE, 1)


async def next_event(feed, timeout=5.0):
    event = await feed.get(timeout=timeout)
    assert event is not None, "no change event arrived"
    return event


async def test_insert_announces_the_row_and_every_index(backend, session):
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(ITEM))
    try:
        row = Item.new_row()
        row.name, row.time = "a", 1
        async with session() as s:
            await s.using(Item).insert(row)
        event = await next_event(feed)
        assert event.channel == backend.change_channel(ITEM)
        assert event.row_ids == (row.id,)
        assert set(event.indexes) == set(Item.indexes_)
    finally:
        await feed.close()


async def test_update_announces_only_changed_indexes(filled, session):
    backend = filled
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(ITEM))
    try:
        async with session() as s:
            row = await s.using(Item).get(name="Itm10")
            row.qty = 1  # not indexed
            await s.using(Item).update(row)
        event = await next_event(feed)
        assert event.row_ids == (row.id,) and event.indexes == ()
        async with session() as s:
            row = await s.using(Item).get(name="Itm10")
            row.owner = 3
            await s.using(Item).update(row)
        event = await next_event(feed)
        assert event.indexes == ("owner",)
    finally:
        await feed.close()


async def test_delete_announces_the_row_and_every_index(filled, session):
    backend = filled
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(ITEM))
    try:
        async with session() as s:
            row = await s.using(Item).get(name="Itm10")
            s.using(Item).delete(row.id)
        event = await next_event(feed)
        assert event.row_ids == (row.id,)
        assert set(event.indexes) == set(Item.indexes_)
    finally:
        await feed.close()


async def test_one_event_per_table_per_commit(backend, session):
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(ITEM))
    await feed.subscribe(backend.change_channel(TableReference(Counter, INSTANCE, 1)))
    try:
        async with session() as s:
            rows = Item.new_rows(3)
            for n, row in enumerate(rows):
                row.name, row.time = f"r{n}", n
                await s.using(Item).insert(row)
            counter = Counter.new_row()
            counter.key = "c"
            await s.using(Counter).insert(counter)
        events = [await next_event(feed), await next_event(feed)]
        by_channel = {e.channel: e for e in events}
        assert set(by_channel[backend.change_channel(ITEM)].row_ids) == {int(r.id) for r in rows}
        assert by_channel[backend.change_channel(TableReference(Counter, INSTANCE, 1))].row_ids == (counter.id,)
        assert await feed.get(timeout=0.2) is None
    finally:
        await feed.close()


async def test_unsubscribed_channels_and_read_only_sessions_are_silent(filled, session):
    backend = filled
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(TableReference(Counter, INSTANCE, 1)))
    try:
        async with session() as s:
            await s.using(Item).range(time=(110, 120))
            row = await s.using(Item).get(name="Itm10")
            row.qty = 3
            await s.using(Item).update(row)
        assert await feed.get(timeout=0.3) is None
    finally:
        await feed.close()


async def test_events_reach_a_second_client_of_the_same_database(backend, session):
    other = Backend.from_url(backend.master.url)
    await other.open()
    feed = other.change_feed()
    await feed.subscribe(other.change_channel(ITEM))
    try:
        row = Item.new_row()
        row.name, row.time = "x", 1
        async with session() as s:
            await s.using(Item).insert(row)
        event = await next_event(feed)
        assert event.row_ids == (row.id,)
    finally:
        await feed.close()
        await other.close()


async def test_events_arrive_quickly_and_in_commit_order(backend, session):
    feed = backend.change_feed()
    await feed.subscribe(backend.change_channel(ITEM))
    try:
        ids = []
        for n in range(20):
            row = Item.new_row()
            row.name, row.time = f"o{n}", n
            async with session() as s:
                await s.using(Item).insert(row)
            ids.append(int(row.id))
        got = []
        async with asyncio.timeout(5):
            while len(got) < 20:
                got.extend((await next_event(feed)).row_ids)
        assert got == ids
    finally:
        await feed.close()
