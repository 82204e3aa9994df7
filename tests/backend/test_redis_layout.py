"""The Redis key layout and index encoding HeTu databases use (data-layer.md §2)."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis

from hetu.data.backend import Backend, TableReference
from hetu.data.backend.base import Bounds
from hetu.data.backend.redis import keys
from tests.backend.conftest import INSTANCE, Item, create_tables
from tests.conftest import redis_server


@pytest.fixture(params=["redis", "valkey"])
async def rbackend(request):
    url = redis_server(request.param).url()
    r = aioredis.Redis.from_url(url)
    await r.flushdb()
    be = Backend.from_url(url)
    await be.open()
    await create_tables(be, Item)
    yield be, r
    await r.aclose()
    await be.close()


REF = TableReference(Item, INSTANCE, 1)


def test_key_names():
    assert keys.row_key(REF, 123456) == "pytest:Item:{CLU1}:id:123456"
    assert keys.index_key(REF, "name") == "pytest:Item:{CLU1}:index:name"
    assert keys.meta_key(REF) == "pytest:Item:meta"
    copy = Item.duplicate("pytest", "copy")
    assert keys.row_key(TableReference(copy, INSTANCE, 3), 5) == "pytest:Item:copy:{CLU3}:id:5"


@pytest.mark.parametrize(
    "value, kind, hexed",
    [
        (10, "i", "800000000000000a"),
        (np.int8(1), "i", "8000000000000001"),
        (np.float32(123.31), "f", "c05ed3d700000000"),
        (np.float32(-123.31), "f", "3fa12c28ffffffff"),
        (0.0, "f", "8000000000000000"),
        (-0.0, "f", "8000000000000000"),
        (float("inf"), "f", "fff0000000000000"),
        (float("-inf"), "f", "000fffffffffffff"),
        (-1.0, "f", "400fffffffffffff"),
        (5, "u", "0000000000000005"),
    ],
)
def test_sortable_encoding_vectors(value, kind, hexed):
    assert keys.sortable(value, kind).hex() == hexed


def test_sortable_encoding_preserves_order():
    pairs = [
        ((np.iinfo(np.int64).max, "i"), (np.iinfo(np.int64).min, "i")),
        ((127, "i"), (-1, "i")),
        ((128, "i"), (-1, "i")),
        ((np.iinfo(np.uint64).max, "u"), (1, "u")),
        ((2**53 - 1 + 0.123, "f"), (-(2**53 - 1) + 0.123, "f")),
        ((123.456, "f"), (-0.0334, "f")),
    ]
    for (a, ka), (b, kb) in pairs:
        assert keys.sortable(a, ka) > keys.sortable(b, kb)


def test_string_encoding_escapes_nul():
    assert keys.sortable("a\x00b", "U") == b"a\x00\xffb"
    assert keys.sortable(b"\x00", "S") == b"\x00\xff"
    assert keys.member("10", "U", 42) == b"10\x0042"
    assert keys.member_row_id(b"a\x00\xffb\x0042") == 42


async def test_committed_rows_use_the_reference_layout(rbackend):
    be, r = rbackend
    row = Item.new_row()
    row.owner, row.time, row.name, row.model, row.used = 10, 10, "10", np.float32(123.31), True
    async with be.session(INSTANCE, 1) as s:
        await s.using(Item).insert(row)
    stored = await r.hgetall(f"pytest:Item:{{CLU1}}:id:{row.id}")
    assert stored[b"_version"] == b"1"
    assert stored[b"name"] == b"10"
    assert stored[b"owner"] == b"10"
    assert stored[b"used"] == b"1"
    assert np.float32(float(stored[b"model"])) == np.float32(123.31)
    rid = str(row.id).encode()
    members = {
        f: await r.zrange(f"pytest:Item:{{CLU1}}:index:{f}", 0, -1, withscores=True)
        for f in ("owner", "time", "name", "model", "used", "id")
    }
    assert members["owner"] == [(bytes.fromhex("800000000000000a") + b"\x00" + rid, 0.0)]
    assert members["time"][0][0] == bytes.fromhex("800000000000000a") + b"\x00" + rid
    assert members["name"][0][0] == b"10\x00" + rid
    assert members["model"][0][0] == bytes.fromhex("c05ed3d700000000") + b"\x00" + rid
    assert members["used"][0][0] == bytes.fromhex("8000000000000001") + b"\x00" + rid
    assert members["id"][0][0] == keys.sortable(row.id, "i") + b"\x00" + rid
    meta = await r.hgetall("pytest:Item:meta")
    assert meta[b"version"].decode() == Item.schema_version()
    assert meta[b"cluster_id"] == b"1"


async def test_rows_written_by_hand_in_hetu_format_are_read(rbackend):
    be, r = rbackend
    key = "pytest:Item:{CLU1}:id:77"
    await r.hset(key, mapping={"id": "77", "_version": "3", "owner": "5", "model": "0.10000000149011612",
                               "qty": "4", "level": "1", "time": "9", "name": "legacy", "used": "0",
                               "friend": "0"})
    await r.zadd("pytest:Item:{CLU1}:index:name", {keys.member("legacy", "U", 77): 0})
    async with be.session(INSTANCE, 1) as s:
        row = await s.using(Item).get(name="legacy")
    assert (row.id, row._version, row.owner, row.time) == (77, 3, 5, 9)
    assert row.model == np.float32(0.1)


async def test_deleting_every_row_leaves_no_cluster_keys(rbackend):
    be, r = rbackend
    async with be.session(INSTANCE, 1) as s:
        for t in range(5):
            row = Item.new_row()
            row.time, row.name = t, f"n{t}"
            await s.using(Item).insert(row)
    async with be.session(INSTANCE, 1) as s:
        repo = s.using(Item)
        for row in await repo.range("time", 0, 4):
            repo.delete(row.id)
    assert await r.keys("pytest:Item:{CLU*") == []


async def test_get_by_index_and_commit_are_one_round_trip_each(rbackend, monkeypatch):
    be, r = rbackend
    async with be.session(INSTANCE, 1) as s:
        row = Item.new_row()
        row.time, row.name = 1, "one"
        await s.using(Item).insert(row)

    client = be.master.calls  # the connection transactions send their commands on
    calls = []
    original = client.execute

    async def counting(*args, **kwargs):
        calls.append(args[0])
        return await original(*args, **kwargs)

    monkeypatch.setattr(client, "execute", counting)
    async with be.session(INSTANCE, 1) as s:
        repo = s.using(Item)
        found = await repo.get(name="one")
        assert calls == ["EVALSHA_RO"]
        found.qty = 5
        await repo.update(found)
    assert calls == ["EVALSHA_RO", "EVALSHA"]
    calls.clear()
    async with be.session(INSTANCE, 1) as s:
        async with s.using(Item).upsert(name="two") as new:
            new.time = 2
    # get (read) + commit: the anchor seen absent is checked by the commit itself
    assert calls == ["EVALSHA_RO", "EVALSHA"]


async def test_scripts_are_reloaded_after_script_flush(rbackend):
    be, r = rbackend
    await r.script_flush()
    async with be.session(INSTANCE, 1) as s:
        row = Item.new_row()
        row.time, row.name = 1, "flushed"
        await s.using(Item).insert(row)
        assert await s.using(Item).get(name="zzz") is None
    async with be.session(INSTANCE, 1) as s:
        assert (await s.using(Item).get(name="flushed")).time == 1


async def test_commit_payload_checks(rbackend):
    be, _ = rbackend
    from hetu.data.backend.base import TableWrites

    row = Item.new_row()
    row.time, row.name = 10, "10"
    old = row.copy()
    old._version = 4
    new = old.copy()
    new.time = 11
    tw = TableWrites(REF, inserts=[row], updates=[(old, new, ("time",))], deletes=[], reads=[(9, 2)])
    checks, pushes, publishes, freed = be.master._build_commit([tw])
    rk = keys.row_key(REF, row.id)
    assert ["V", rk, "4"] in checks
    assert ["N", rk] in checks
    assert ["V", keys.row_key(REF, 9), "2"] in checks
    uniq_fields = sorted(c[4] for c in checks if c[0] == "U")
    assert uniq_fields == ["name", "time", "time"]  # insert: name, time; update: changed time
    hset_update = [p for p in pushes if p[0] == "HSET" and p[3] == "5"]
    assert hset_update == [["HSET", rk, "_version", "5", "time", b"11"]]
    assert ["ZREM", keys.index_key(REF, "time"), keys.member(10, "i", row.id)] in pushes
    assert publishes[0][0] == keys.change_channel(REF)
    assert freed == {keys.index_key(REF, "time"): {str(int(row.id)): True}}


async def test_lex_bounds():
    b = Bounds(5, 7, True, False)
    low, high = keys.lex_bounds(b, "i")
    assert low == b"[" + keys.sortable(5, "i") + b"\x00"
    assert high == b"[" + keys.sortable(7, "i") + b"\x00"
