"""Optimistic concurrency: what concurrent transactions see and which one fails."""

from __future__ import annotations

import asyncio

import pytest

from hetu import RaceCondition, UniqueViolation
from tests.backend.conftest import Counter, Item


async def test_fifty_concurrent_increments_end_at_fifty(backend, session):
    async with session() as s:
        row = Counter.new_row()
        row.key = "hits"
        await s.using(Counter).insert(row)

    races = 0

    async def increment():
        nonlocal races
        while True:
            try:
                async with session() as s:
                    repo = s.using(Counter)
                    counter = await repo.get(key="hits")
                    await asyncio.sleep(0)  # let the others read the same version
                    counter.value += 1
                    await repo.update(counter)
                return
            except RaceCondition:
                races += 1

    await asyncio.gather(*(increment() for _ in range(50)))
    async with session() as s:
        assert (await s.using(Counter).get(key="hits")).value == 50
    assert races > 0  # the test really exercised conflicts


async def test_concurrent_inserts_of_one_unique_value_leave_one_row(backend, session):
    outcomes = []
    everyone_looked = asyncio.Barrier(20)

    async def claim(n):
        try:
            async with session() as s:
                repo = s.using(Item)
                seen = await repo.get(name="crown")
                await everyone_looked.wait()
                if seen is not None:
                    outcomes.append("found")
                    return
                row = Item.new_row()
                row.name, row.time = "crown", 1000 + n
                await repo.insert(row)
            outcomes.append("won")
        except (RaceCondition, UniqueViolation) as exc:
            outcomes.append(type(exc).__name__)

    await asyncio.gather(*(claim(n) for n in range(20)))
    async with session() as s:
        rows = await s.using(Item).range(name=("crown", "crown"), limit=-1)
    assert len(rows) == 1
    assert outcomes.count("won") == 1
    # everyone saw the value free, so every loser lost a race (a retry finds the row)
    assert outcomes.count("RaceCondition") == 19


async def test_row_updated_between_read_and_commit_raises_race(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        async with session() as other:
            theirs = await other.using(Item).get(name="Itm10")
            theirs.qty = 1
            await other.using(Item).update(theirs)
        row.qty = 2
        await repo.update(row)
        with pytest.raises(RaceCondition, match="Version"):
            await s.commit()
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10")).qty == 1


async def test_delete_of_a_row_changed_meanwhile_raises_race(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        async with session() as other:
            theirs = await other.using(Item).get(name="Itm10")
            theirs.qty = 1
            await other.using(Item).update(theirs)
        repo.delete(row.id)
        with pytest.raises(RaceCondition, match="Version"):
            await s.commit()


async def test_stale_read_aborts_a_commit_that_writes_elsewhere(filled, session):
    async with session() as s:
        repo = s.using(Item)
        a = await repo.get(name="Itm10")
        async with session() as other:
            theirs = await other.using(Item).get(name="Itm10")
            theirs.qty = 1
            await other.using(Item).update(theirs)
        b = await repo.get(name="Itm11")
        b.qty = a.qty + 1  # decided from a stale value
        await repo.update(b)
        with pytest.raises(RaceCondition):
            await s.commit()
    async with session() as s:
        assert (await s.using(Item).get(name="Itm11")).qty == 999


async def test_read_only_session_never_fails(filled, session):
    async with session() as s:
        rows = await s.using(Item).range(time=(110, 112))
        async with session() as other:
            theirs = await other.using(Item).get(name="Itm10")
            theirs.qty = 1
            await other.using(Item).update(theirs)
    assert len(rows) == 3


async def test_updates_of_different_rows_both_commit(filled, session):
    async def bump(name):
        async with session() as s:
            row = await s.using(Item).get(name=name)
            await asyncio.sleep(0)
            row.qty = 5
            await s.using(Item).update(row)

    await asyncio.gather(bump("Itm10"), bump("Itm11"))
    async with session() as s:
        rows = await s.using(Item).range(name=("Itm10", "Itm11"))
    assert list(rows.qty) == [5, 5]


async def test_concurrent_updates_to_the_same_unique_value_one_fails(filled, session):
    async with session() as a, session() as b:
        ra = await a.using(Item).get(name="Itm10")
        rb = await b.using(Item).get(name="Itm11")
        ra.time = rb.time = 9999
        await a.using(Item).update(ra)
        await b.using(Item).update(rb)
        await a.commit()
        with pytest.raises(RaceCondition, match="UNIQUE"):
            await b.commit()


async def test_concurrent_inserts_with_different_values_both_commit(backend, session):
    async def insert(name, t):
        async with session() as s:
            row = Item.new_row()
            row.name, row.time = name, t
            await s.using(Item).insert(row)

    await asyncio.gather(insert("x", 1), insert("y", 2))
    async with session() as s:
        assert len(await s.using(Item).range(time=(1, 2))) == 2


async def test_upsert_racing_an_insert_is_a_race_not_a_violation(backend, session):
    async with session() as s:
        ctx = s.using(Item).upsert(name="key")
        async with ctx as row:
            row.time = 1
            async with session() as other:
                theirs = Item.new_row()
                theirs.name, theirs.time = "key", 2
                await other.using(Item).insert(theirs)
        with pytest.raises(RaceCondition):
            await s.commit()


async def test_session_retry_reruns_until_commit(backend, session):
    async with session() as s:
        row = Item.new_row()
        row.name, row.time, row.qty = "q", 1, 1
        await s.using(Item).insert(row)

    attempts = 0

    async def add_one():
        nonlocal attempts
        async for attempt in session().retry(50):
            async with attempt as s:
                attempts += 1
                r = await s.using(Item).get(name="q")
                await asyncio.sleep(0)
                r.qty += 1
                await s.using(Item).update(r)

    await asyncio.gather(*(add_one() for _ in range(4)))
    async with session() as s:
        assert (await s.using(Item).get(name="q")).qty == 5
    assert attempts > 4


async def test_session_retry_gives_up_after_the_last_attempt(backend, session):
    with pytest.raises(ValueError):
        async for _ in session().retry(0):
            pass

    with pytest.raises(RaceCondition):
        async for attempt in session().retry(2):
            async with attempt:
                raise RaceCondition("always")


async def test_same_component_in_two_clusters_is_two_tables(backend):
    from tests.backend.conftest import INSTANCE

    for cluster in (1, 2):
        async with backend.session(INSTANCE, cluster) as s:
            row = Item.new_row()
            row.name, row.time, row.owner = "test", 1, cluster
            await s.using(Item).insert(row)
    for cluster in (1, 2):
        async with backend.session(INSTANCE, cluster) as s:
            rows = await s.using(Item).range(name=("test", "test"), limit=-1)
            assert list(rows.owner) == [cluster]
