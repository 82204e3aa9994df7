"""Index ranges: bounds, markers, ordering, limits and every key type, on every backend."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.backend.conftest import Item, Keyed

inf = float("inf")


async def times(session, **kwargs):
    async with session() as s:
        return list((await s.using(Item).range(**kwargs)).time)


async def test_range_is_inclusive_by_default(filled, session):
    assert await times(session, time=(110, 115)) == list(range(110, 116))


async def test_interval_markers(filled, session):
    assert await times(session, time=("[110", "(115")) == list(range(110, 115))
    assert await times(session, time=("(110", "[115")) == list(range(111, 116))
    assert await times(session, time=("(110", "(115")) == list(range(111, 115))


async def test_infinite_bounds_on_an_integer_index(filled, session):
    assert await times(session, time=(-inf, 115)) == list(range(110, 116))
    assert await times(session, time=(120, inf)) == list(range(120, 130))  # default limit 10
    assert len(await times(session, time=(-inf, inf), limit=100)) == 25


async def test_desc_reverses_order(filled, session):
    assert await times(session, time=(110, 115), desc=True) == list(range(115, 109, -1))


async def test_desc_keeps_each_marker_on_its_own_bound(filled, session):
    assert await times(session, time=("(110", "[115"), desc=True) == [115, 114, 113, 112, 111]
    assert await times(session, time=("[110", "(115"), desc=True) == [114, 113, 112, 111, 110]


async def test_limit_on_equal_values(filled, session):
    async with session() as s:
        repo = s.using(Item)
        assert len(await repo.range(owner=(10, 10))) == 10
        assert len(await repo.range(owner=(10, 10), limit=30)) == 25
        assert len(await repo.range(owner=(10, 10), limit=8)) == 8
        assert len(await repo.range(owner=(11, 11))) == 0
        assert len(await repo.range(owner=(10, 10), limit=0)) == 0


async def test_equal_values_are_ordered_by_id(filled, session):
    async with session() as s:
        rows = await s.using(Item).range(owner=(10, 10), limit=-1)
        assert list(rows.id) == sorted(rows.id)
        rows = await s.using(Item).range(owner=(10, 10), limit=-1, desc=True)
        assert list(rows.id) == sorted(rows.id, reverse=True)


async def test_range_over_ids(filled, session):
    async with session() as s:
        repo = s.using(Item)
        ids = list((await repo.range(id=(-inf, inf), limit=-1)).id)
        assert ids == sorted(ids) and len(ids) == 25
        assert list((await repo.range(id=(ids[5], ids[10]))).id) == ids[5:11]


async def test_reversed_bounds_raise(filled, session):
    async with session() as s:
        with pytest.raises(ValueError, match="right.*left"):
            await s.using(Item).range(time=(115, 110))


async def test_equal_exclusive_bounds_are_empty(filled, session):
    async with session() as s:
        repo = s.using(Item)
        assert len(await repo.range(time=("(115", "(115"))) == 0
        assert len(await repo.range(name=("(Itm11", "(Itm11"))) == 0
        assert len(await repo.range(name=("[Itm11", "[Itm11"))) == 1


async def test_float_bounds_are_cast_to_the_column_type(filled, session):
    assert await times(session, model=(1.1, 2.3), limit=-1) == list(range(121, 134))
    async with session() as s:
        models = (await s.using(Item).range(model=(-inf, inf), limit=-1)).model
    assert np.allclose(models, np.arange(25, dtype=np.float32) * np.float32(0.1))


async def test_fractional_bounds_on_an_integer_index_round_inwards(filled, session):
    assert await times(session, time=(110.5, 112.5)) == [111, 112]
    assert await times(session, time=("(110.5", "(112.5")) == [111, 112]


async def test_string_index_rejects_numbers_and_infinity(filled, session):
    async with session() as s:
        with pytest.raises(ValueError, match="str"):
            await s.using(Item).range(name=(-inf, inf))
        with pytest.raises(ValueError, match="str"):
            await s.using(Item).range(name=(1, 2))


async def test_string_ranges(filled, session):
    async with session() as s:
        repo = s.using(Item)
        assert len(await repo.range(name=("11", "11"))) == 0
        assert list((await repo.range(name=("Itm11", "Itm11"))).time) == [111]
        assert list((await repo.range(name=("Itm11", "Itm12"))).time) == [111, 112]
        last = (await repo.range(name=("Itm11", "Itm13")))[-1]
        assert (await repo.get(name="Itm13")).id == last.id


async def test_range_rejects_unknown_index_and_bad_pairs(filled, session):
    async with session() as s:
        repo = s.using(Item)
        with pytest.raises(ValueError, match="no index named"):
            await repo.range(qty=(1, 2))
        with pytest.raises(ValueError, match="pair"):
            await repo.range(time=110)


async def test_bool_index(filled, session):
    async with session() as s:
        repo = s.using(Item)
        for name in ("Itm12", "Itm15"):
            row = await repo.get(name=name)
            row.used = True
            await repo.update(row)
    async with session() as s:
        repo = s.using(Item)
        assert list((await repo.range(used=(True, True))).time) == [112, 115]
        assert len(await repo.range(used=(False, False), limit=-1)) == 23
        both = await repo.range(used=(False, True), limit=-1)
        assert list(both.used[-2:]) == [1, 1] and len(both) == 25


async def test_range_predicate_is_evaluated_on_committed_data(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.time = 5000
        await repo.update(row)
        new = Item.new_row()
        new.name, new.time = "new", 111_111
        await repo.insert(new)
        rows = await repo.range(time=(110, 111))
        # matched by its committed time, returned with this session's value
        assert list(rows.time) == [5000, 111]
        assert len(await repo.range(time=(111_111, 111_111))) == 0


async def test_colons_and_prefixes_do_not_collide(backend, session):
    async with session() as s:
        repo = s.using(Item)
        for t, name in enumerate(["boss", "boss:1", "a", "a0", "a9", "ab", "b"]):
            row = Item.new_row()
            row.name, row.time = name, t
            await repo.insert(row)
    async with session() as s:
        repo = s.using(Item)
        assert list((await repo.range(name=("boss", "boss"))).name) == ["boss"]
        assert list((await repo.range(name=("a", "ab"))).name) == ["a", "a0", "a9", "ab"]
        assert list((await repo.range(name=("a", "ab"), desc=True)).name) == ["ab", "a9", "a0", "a"]
        zzz = Item.new_row()
        zzz.name, zzz.time = "boss:", 100
        await repo.insert(zzz)


async def test_over_long_strings_are_truncated_and_indexed(backend, session):
    async with session() as s:
        row = Item.new_row()
        row.name, row.time = "reinsert9", 1
        assert row.name == "reinsert"
        await s.using(Item).insert(row)
    async with session() as s:
        assert (await s.using(Item).get(name="reinsert")).id == row.id


KEYED_VALUES = {
    "i": [-(2**31), -5, -1, 0, 1, 7, 2**31 - 1],
    "u": [0, 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1],
    "f": [-inf, -1e300, -2.5, -0.0, 1e-300, 2.5, 1e300, inf],
    "s": ["", "A", "a", "ab", "é", "中文", "日本", "😀"],
    # NumPy S<n> strips trailing NULs, so values end with a non-NUL byte
    "b": [b"", b"\x00\x01", b"\x01", b"a", b"ab", b"\xff", b"\xff\xff"],
}


def _marker(value, marker):
    if isinstance(value, bytes):
        return marker.encode() + value
    return marker + (value if isinstance(value, str) else repr(value))


async def insert_keyed(session, field, values):
    rng = random.Random(field)
    shuffled = list(values)
    rng.shuffle(shuffled)
    async with session() as s:
        repo = s.using(Keyed)
        for v in shuffled:
            row = Keyed.new_row()
            row[field] = v
            await repo.insert(row)


@pytest.mark.parametrize("field", list(KEYED_VALUES))
async def test_every_key_type_sorts_like_its_values(backend, session, field):
    values = sorted(KEYED_VALUES[field])
    await insert_keyed(session, field, values)
    async with session() as s:
        repo = s.using(Keyed)
        rows = await repo.range(field, values[0], values[-1], limit=-1)
        assert list(rows[field]) == values
        rows = await repo.range(field, values[0], values[-1], limit=-1, desc=True)
        assert list(rows[field]) == values[::-1]
        for v in values:
            assert (await repo.get(field, v))[field] == v
        for a, b, c in zip(values, values[1:], values[2:]):
            inner = await repo.range(field, _marker(a, "("), _marker(c, "("), limit=-1)
            assert list(inner[field]) == [b]
            closed = await repo.range(field, _marker(a, "["), _marker(c, "["), limit=-1)
            assert list(closed[field]) == [a, b, c]


async def test_negative_ints_with_limits_and_desc(backend, session):
    await insert_keyed(session, "i", KEYED_VALUES["i"])
    async with session() as s:
        repo = s.using(Keyed)
        assert list((await repo.range(i=(-inf, -1), limit=-1)).i) == [-(2**31), -5, -1]
        assert list((await repo.range(i=(-inf, -1), desc=True, limit=2)).i) == [-1, -5]
        assert list((await repo.range(i=("(-5", "(1"), limit=-1)).i) == [-1, 0]


async def test_float_infinities_are_values_too(backend, session):
    await insert_keyed(session, "f", KEYED_VALUES["f"])
    async with session() as s:
        repo = s.using(Keyed)
        assert list((await repo.range(f=(-inf, -inf))).f) == [-inf]
        assert list((await repo.range(f=(inf, inf))).f) == [inf]
        assert list((await repo.range(f=("(-inf", -1), limit=-1)).f) == [-1e300, -2.5]


async def test_random_ranges_match_a_python_filter(backend, session):
    rng = random.Random(1234)
    ints = rng.sample(range(-1000, 1000), 40)
    words = sorted({"".join(rng.choice("abéz") for _ in range(rng.randint(0, 4))) for _ in range(30)})
    async with session() as s:
        repo = s.using(Keyed)
        for n, v in enumerate(ints):
            row = Keyed.new_row()
            row.i = v
            row.s = words[n % len(words)] + str(n)
            await repo.insert(row)
    stored_s = [words[n % len(words)] + str(n) for n in range(len(ints))]

    def expect(values, low, high, low_inc, high_inc, desc, limit):
        hits = sorted(v for v in values if (v >= low if low_inc else v > low) and (v <= high if high_inc else v < high))
        if desc:
            hits.reverse()
        return hits if limit < 0 else hits[:limit]

    async with session() as s:
        repo = s.using(Keyed)
        for _ in range(150):
            field, values = rng.choice([("i", ints), ("s", stored_s)])
            pool = values + ([rng.randint(-1100, 1100) for _ in range(3)] if field == "i" else ["", "b", "zz"])
            low, high = sorted(rng.sample(pool, 2)) if rng.random() < 0.9 else [pool[0]] * 2
            low_inc, high_inc = rng.random() < 0.5, rng.random() < 0.5
            desc, limit = rng.random() < 0.5, rng.choice([-1, 1, 3, 100])
            rows = await repo.range(field, _marker(low, "[" if low_inc else "("),
                                    _marker(high, "[" if high_inc else "("), limit=limit, desc=desc)
            assert list(rows[field]) == expect(values, low, high, low_inc, high_inc, desc, limit), (
                field, low, high, low_inc, high_inc, desc, limit)


async def test_get_many_returns_rows_in_the_order_asked_with_none_for_missing(filled):
    from hetu.data.backend import TableReference

    ref = TableReference(Item, "pytest", 1)
    client = filled.master
    rows = await client.range(ref, "time", await _bounds("time", 110, 114), 10, False)
    ids = [int(r.id) for r in rows]
    asked = [ids[3], 999_999_999, ids[0], ids[3]]
    got = await client.get_many(ref, asked)
    assert [None if r is None else int(r.id) for r in got] == [ids[3], None, ids[0], ids[3]]
    assert got[0].tobytes() == rows[3].tobytes()
    assert await client.get_many(ref, []) == []


async def test_range_order_key_sorts_like_the_backend(filled):
    """Equal index values are ordered by id the way the backend's range orders them."""
    from hetu.data.backend import TableReference

    client = filled.master
    ref = TableReference(Item, "pytest", 1)
    for desc in (False, True):
        rows = list(await client.range(ref, "owner", await _bounds("owner", 10, 10), 100, desc))
        assert len(rows) == 25
        keyed = sorted(rows, key=lambda r: client.range_order_key(int(r.owner), int(r.id)), reverse=desc)
        assert [int(r.id) for r in keyed] == [int(r.id) for r in rows]
    key = client.range_order_key
    assert key(5, 3) < key(6, 1)
    if type(client).__name__.startswith("Redis"):
        assert key(5, 10) < key(5, 9)  # the id's digits as text, as in the index member
    else:
        assert key(5, 9) < key(5, 10)


async def _bounds(index, low, high):
    from hetu.data.backend.bounds import normalize_bounds

    return normalize_bounds(Item, index, low, high)
