"""Table meta: creating tables, refusing changed schemas, flushing volatile tables."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import hetu
from hetu.data.backend import RaceCondition, SchemaMismatch, TableReference, TableStatus
from hetu.data.backend.maintenance import flush_volatile, prepare_tables
from tests.backend.conftest import INSTANCE, Counter, Item


def define_hero(extra_field: bool = False, permission=hetu.Permission.USER):
    """Two versions of one component, as in an app before and after an edit."""

    class Hero(hetu.BaseComponent):
        hp: np.int32 = hetu.property_field(100)
        if extra_field:
            mp: np.int32 = hetu.property_field(50)

    return hetu.define_component(namespace="pytest_maint", force=True, permission=permission)(Hero)


async def test_status_of_a_new_table_is_not_exists_then_ok(backend):
    hero = TableReference(define_hero(), INSTANCE, 1)
    maint = backend.maintenance()
    assert (await maint.check_table(hero))[0] == TableStatus.NOT_EXISTS
    await maint.create_table(hero)
    status, meta = await maint.check_table(hero)
    assert status == TableStatus.OK
    assert meta.version == hero.comp_cls.schema_version()
    assert meta.cluster_id == 1
    assert meta.json == hero.comp_cls.json_


async def test_creating_an_existing_table_is_a_race(backend):
    with pytest.raises(RaceCondition):
        await backend.maintenance().create_table(TableReference(Item, INSTANCE, 1))


async def test_a_table_being_created_is_seen_whole_or_not_at_all(backend):
    """Workers starting together create and check tables concurrently: a check may never
    see a half-written meta (on Redis it once read cluster id -1 and the worker exited)."""
    maint = backend.maintenance()
    for round_ in range(20):
        hero = TableReference(define_hero(), f"race{round_}", 7)

        async def create(hero=hero):
            try:
                await maint.create_table(hero)
                return 1
            except RaceCondition:
                return 0

        async def check(hero=hero):
            return [await maint.read_meta(hero) for _ in range(5)]

        results = await asyncio.gather(*(create() for _ in range(3)), *(check() for _ in range(6)))
        assert sum(results[:3]) == 1
        seen = [meta for metas in results[3:] for meta in metas if meta is not None]
        assert all(meta.cluster_id == 7 and meta.json == hero.comp_cls.json_ for meta in seen), seen


async def test_prepare_tables_creates_missing_tables_once(backend):
    hero = TableReference(define_hero(), INSTANCE, 1)
    created = await prepare_tables(backend, [hero, TableReference(Item, INSTANCE, 1)])
    assert created == [hero]
    assert await prepare_tables(backend, [hero]) == []


async def test_changed_schema_is_refused_with_upgrade_advice(backend):
    await prepare_tables(backend, [TableReference(define_hero(), INSTANCE, 1)])
    changed = TableReference(define_hero(extra_field=True), INSTANCE, 1)
    assert (await backend.maintenance().check_table(changed))[0] == TableStatus.SCHEMA_MISMATCH
    with pytest.raises(SchemaMismatch, match="Hero.*hetu upgrade"):
        await prepare_tables(backend, [changed])


async def test_permission_change_is_a_schema_change(backend):
    await prepare_tables(backend, [TableReference(define_hero(), INSTANCE, 1)])
    changed = TableReference(define_hero(permission=hetu.Permission.ADMIN), INSTANCE, 1)
    with pytest.raises(SchemaMismatch):
        await prepare_tables(backend, [changed])


async def test_changed_cluster_id_is_refused(backend):
    hero = define_hero()
    await prepare_tables(backend, [TableReference(hero, INSTANCE, 1)])
    moved = TableReference(hero, INSTANCE, 4)
    assert (await backend.maintenance().check_table(moved))[0] == TableStatus.CLUSTER_MISMATCH
    with pytest.raises(SchemaMismatch, match="cluster id 1 -> 4"):
        await prepare_tables(backend, [moved])


async def test_flush_wipes_volatile_tables_only(backend, session):
    async with session() as s:
        for n in range(25):
            row = Counter.new_row()
            row.key = f"k{n}"
            await s.using(Counter).insert(row)
        item = Item.new_row()
        item.name, item.time = "keep", 1
        await s.using(Item).insert(item)
    refs = [TableReference(Counter, INSTANCE, 1), TableReference(Item, INSTANCE, 1)]
    assert await flush_volatile(backend, refs) == [refs[0]]
    async with session() as s:
        assert len(await s.using(Counter).range("id", -np.inf, np.inf, limit=-1)) == 0
        assert (await s.using(Item).get(name="keep")) is not None
    assert (await backend.maintenance().check_table(refs[0]))[0] == TableStatus.OK


async def test_flushing_a_persistent_table_needs_force(backend, session):
    ref = TableReference(Item, INSTANCE, 1)
    with pytest.raises(ValueError, match="persistent"):
        await backend.maintenance().flush(ref)
    async with session() as s:
        row = Item.new_row()
        row.name, row.time = "gone", 1
        await s.using(Item).insert(row)
    await backend.maintenance().flush(ref, force=True)
    async with session() as s:
        assert await s.using(Item).get(name="gone") is None


async def test_dropping_a_table_keeps_its_copies(backend):
    copy = Item.duplicate("pytest", "copy")
    copy_ref = TableReference(copy, INSTANCE, 1)
    await backend.maintenance().create_table(copy_ref)
    async with backend.session(INSTANCE, 1) as s:
        row = copy.new_row()
        row.name, row.time = "copied", 1
        await s.using(copy).insert(row)
        orig = Item.new_row()
        orig.name, orig.time = "orig", 1
        await s.using(Item).insert(orig)
    assert await backend.maintenance().drop_table(TableReference(Item, INSTANCE, 1)) == 1
    async with backend.session(INSTANCE, 1) as s:
        assert (await s.using(copy).get(name="copied")) is not None
        assert (await s.using(Item).get(name="orig")) is None
    assert (await backend.maintenance().check_table(copy_ref))[0] == TableStatus.OK
