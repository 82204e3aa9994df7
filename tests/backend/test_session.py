"""Session and repository behaviour, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from hetu import RaceCondition, UniqueViolation
from tests.backend.conftest import Item


async def count_items(session) -> int:
    async with session() as s:
        return len(await s.using(Item).range("id", -np.inf, np.inf, limit=-1))


async def test_repository_use_after_the_block_raises(filled, session):
    s = session()
    async with s:
        repo = s.using(Item)
    with pytest.raises(AssertionError, match="Session"):
        await repo.get(id=1)
    with pytest.raises(AssertionError, match="Session"):
        await repo.range(id=(10, 5))


async def test_repository_use_after_early_commit_raises(filled, session):
    async with session() as s:
        repo = s.using(Item)
        await s.commit()
        with pytest.raises(AssertionError, match="Session"):
            await repo.get(name="Itm10")


async def test_get_returns_uncommitted_insert_in_same_session(backend, session):
    async with session() as s:
        repo = s.using(Item)
        row = Item.new_row()
        row.name = "fresh"
        row.time = 1
        await repo.insert(row)
        got = await repo.get(id=row.id)
        assert got.name == "fresh"
        assert (await repo.get(name="fresh")).id == row.id


async def test_get_returns_a_record_copy(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm12")
        assert isinstance(row, np.record)
        row.qty = 1  # changing the copy changes nothing until update()
        again = await repo.get(id=row.id)
        assert again.qty == 999


async def test_get_missing_returns_none(filled, session):
    async with session() as s:
        repo = s.using(Item)
        assert await repo.get(id=999) is None
        assert await repo.get(name="nobody") is None
        assert await repo.get("time", 5) is None


async def test_get_accepts_positional_index(filled, session):
    async with session() as s:
        assert (await s.using(Item).get("time", 113)).name == "Itm13"


async def test_get_rejects_several_fields_and_unknown_index(filled, session):
    async with session() as s:
        repo = s.using(Item)
        with pytest.raises(AssertionError, match="Only one field"):
            await repo.get(name="Itm10", time=110)
        with pytest.raises(ValueError, match="no index named 'qty'"):
            await repo.get(qty=999)


async def test_update_is_visible_in_session_and_after_commit(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm11")
        row.qty = 5
        await repo.update(row)
        assert (await repo.get(id=row.id)).qty == 5
    async with session() as s:
        stored = await s.using(Item).get(name="Itm11")
        assert stored.qty == 5
        assert stored._version == 2


async def test_insert_sets_version_one(backend, session):
    row = Item.new_row()
    row.time, row.name = 7, "seven"
    async with session() as s:
        await s.using(Item).insert(row)
    async with session() as s:
        stored = await s.using(Item).get(id=row.id)
    assert stored._version == 1
    assert stored.name == "seven"
    assert stored.time == 7


async def test_update_of_unread_row_raises_lookup_error(filled, session):
    async with session() as s:
        row = Item.new_row()
        with pytest.raises(LookupError, match="row id"):
            await s.using(Item).update(row)


async def test_update_without_changes_writes_nothing(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        await repo.update(row)
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10"))._version == 1


async def test_update_rejects_version_change_and_wrong_row_type(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row._version = 7
        with pytest.raises(ValueError, match="_version"):
            await repo.update(row)
        with pytest.raises(TypeError, match="Item row"):
            await repo.update({"id": 1})


async def test_insert_rejects_nonzero_version(backend, session):
    row = Item.new_row()
    row._version = 1
    async with session() as s:
        with pytest.raises(AssertionError, match="_version"):
            await s.using(Item).insert(row)


async def test_delete_needs_a_read_first(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        with pytest.raises(LookupError, match="not existing"):
            repo.delete(row.id + 12345)
        repo.delete(row.id)
        with pytest.raises(LookupError, match="not existing"):
            repo.delete(row.id)
        assert await repo.get(id=row.id) is None
        assert await repo.get(name="Itm10") is None
        rows = await repo.range("time", 110, 112)
        assert list(rows.time) == [111, 112]
    assert await count_items(session) == 24


async def test_update_after_delete_raises(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        repo.delete(row.id)
        row.qty = 1
        with pytest.raises(LookupError, match="row id"):
            await repo.update(row)


async def test_update_then_delete_removes_row(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.qty = 1
        await repo.update(row)
        repo.delete(row.id)
    assert await count_items(session) == 24


async def test_two_updates_keep_the_last_value(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.qty = 1
        await repo.update(row)
        row = await repo.get(name="Itm10")
        row.qty = 2
        await repo.update(row)
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10")).qty == 2


async def test_indexed_field_change_moves_row_between_values(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.owner = 11
        row.name = "moved"
        await repo.update(row)
    async with session() as s:
        repo = s.using(Item)
        assert await repo.get(name="Itm10") is None
        assert (await repo.get(name="moved")).owner == 11
        assert len(await repo.range(owner=(10, 10), limit=-1)) == 24
        assert len(await repo.range(owner=(11, 11), limit=-1)) == 1


async def test_exception_in_block_commits_nothing(filled, session):
    with pytest.raises(ZeroDivisionError):
        async with session() as s:
            repo = s.using(Item)
            row = await repo.get(name="Itm10")
            row.qty = 1
            await repo.update(row)
            new = Item.new_row()
            new.name, new.time = "ghost", 9000
            await repo.insert(new)
            repo.delete((await repo.get(name="Itm11")).id)
            raise ZeroDivisionError
    async with session() as s:
        repo = s.using(Item)
        assert (await repo.get(name="Itm10")).qty == 999
        assert await repo.get(name="ghost") is None
        assert await repo.get(name="Itm11") is not None


async def test_discard_prevents_commit(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.qty = 1
        await repo.update(row)
        s.discard()
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10")).qty == 999


async def test_unique_duplicate_within_session_is_a_violation(backend, session):
    async with session() as s:
        repo = s.using(Item)
        a = Item.new_row()
        a.name, a.time = "a", 1
        await repo.insert(a)
        b = Item.new_row()
        b.name, b.time = "a", 2
        with pytest.raises(UniqueViolation, match="name"):
            await repo.insert(b)
        b.name, b.time = "b", 1
        with pytest.raises(UniqueViolation, match="time"):
            await repo.insert(b)
        b.time = 2
        await repo.insert(b)
        b.time = 1
        with pytest.raises(UniqueViolation, match="time"):
            await repo.update(b)


async def test_unique_clash_with_committed_row_is_a_violation(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = Item.new_row()
        row.name, row.time = "Itm10", 1
        with pytest.raises(UniqueViolation, match="name"):
            await repo.insert(row)
        row.name, row.time = "new", 111
        with pytest.raises(UniqueViolation, match="time"):
            await repo.insert(row)
        existing = await repo.get(name="Itm12")
        existing.time = 113
        with pytest.raises(UniqueViolation, match="time"):
            await repo.update(existing)


async def test_unique_clash_on_value_seen_absent_is_a_race(filled, session):
    """get() saw "late" free; another transaction takes it; our insert must retry
    (a RaceCondition, not a UniqueViolation: the value was free when we looked)."""
    async with session() as s:
        repo = s.using(Item)
        assert await repo.get(name="late") is None
        async with session() as other:
            row = Item.new_row()
            row.name, row.time = "late", 5000
            await other.using(Item).insert(row)
        mine = Item.new_row()
        mine.name, mine.time = "late", 5001
        with pytest.raises(RaceCondition):
            await repo.insert(mine)
            await s.commit()


async def test_delete_then_insert_same_unique_value_commits(filled, session):
    async with session() as s:
        repo = s.using(Item)
        old = await repo.get(name="Itm10")
        repo.delete(old.id)
        new = Item.new_row()
        new.name, new.time = "Itm10", 110
        await repo.insert(new)
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10")).id == new.id


async def test_moving_a_unique_value_to_a_new_row_in_one_session(filled, session):
    async with session() as s:
        repo = s.using(Item)
        old = await repo.get(name="Itm10")
        old.name = "renamed"
        await repo.update(old)
        new = Item.new_row()
        new.name, new.time = "Itm10", 7000
        await repo.insert(new)
    async with session() as s:
        repo = s.using(Item)
        assert (await repo.get(name="Itm10")).id == new.id
        assert (await repo.get(name="renamed")).id == old.id


async def test_upsert_inserts_then_updates(backend, session):
    async with session() as s:
        async with s.using(Item).upsert(name="test") as row:
            row.time = 42
            row.qty = 1
    async with session() as s:
        ctx = s.using(Item).upsert(name="test")
        async with ctx as row:
            assert row.qty == 1
            row.qty = 2
        assert ctx.insert is False
    async with session() as s:
        rows = await s.using(Item).range("name", "test", "test")
        assert len(rows) == 1
        assert rows[0].qty == 2


async def test_upsert_finds_row_with_default_value(filled, session):
    async with session() as s:
        ctx = s.using(Item).upsert(name="Itm10")
        async with ctx as row:
            assert row.time == 110
        assert ctx.insert is False


async def test_upsert_needs_a_unique_field(backend, session):
    async with session() as s:
        with pytest.raises(AssertionError, match="unique"):
            s.using(Item).upsert(used=True)
        with pytest.raises(AssertionError, match="Only one field"):
            s.using(Item).upsert(name="a", time=1)


async def test_two_upserts_of_one_key_yield_one_row_last_value_wins(backend, session):
    async with session() as s:
        repo = s.using(Item)
        async with repo.upsert(name="Item1") as row:
            row.qty, row.time = 1, 1
        first_id = row.id
        async with repo.upsert(name="Item1") as row:
            row.qty = 2
        assert row.id == first_id
    async with session() as s:
        assert (await s.using(Item).get(name="Item1")).qty == 2


async def test_insert_then_upsert_finds_the_inserted_row(backend, session):
    async with session() as s:
        repo = s.using(Item)
        row = Item.new_row()
        row.name, row.time = "x", 3
        await repo.insert(row)
        ctx = repo.upsert(name="x")
        async with ctx as found:
            assert found.id == row.id
        assert ctx.insert is False


async def test_exception_inside_upsert_writes_nothing(backend, session):
    with pytest.raises(KeyError):
        async with session() as s:
            async with s.using(Item).upsert(name="boom") as row:
                row.time = 1
                raise KeyError("x")
    async with session() as s:
        assert await s.using(Item).get(name="boom") is None


async def test_insert_then_delete_in_one_session_commits(backend, session):
    async with session() as s:
        repo = s.using(Item)
        row = Item.new_row()
        row.name, row.time = "brief", 1
        await repo.insert(row)
        repo.delete(row.id)
        keep = Item.new_row()
        keep.name, keep.time = "kept", 2
        await repo.insert(keep)
    async with session() as s:
        repo = s.using(Item)
        assert await repo.get(name="brief") is None
        assert await repo.get(name="kept") is not None


async def test_insert_then_delete_only_commits_nothing(backend, session):
    async with session() as s:
        repo = s.using(Item)
        row = Item.new_row()
        row.name, row.time = "brief", 1
        await repo.insert(row)
        repo.delete(row.id)
    assert await count_items(session) == 0


async def test_delete_after_indexed_change_leaves_no_stale_index_entry(filled, session):
    async with session() as s:
        repo = s.using(Item)
        row = await repo.get(name="Itm10")
        row.name = "changed"
        row.owner = 77
        await repo.update(row)
        repo.delete(row.id)
    async with session() as s:
        repo = s.using(Item)
        assert await repo.get(name="Itm10") is None
        assert await repo.get(name="changed") is None
        assert len(await repo.range(owner=(77, 77))) == 0
        # the value is free again
        new = Item.new_row()
        new.name, new.time = "Itm10", 1
        await repo.insert(new)
    async with session() as s:
        assert (await s.using(Item).get(name="Itm10")).id == new.id


async def test_batch_delete_leaves_the_rest(filled, session):
    async with session() as s:
        repo = s.using(Item)
        rows = await repo.range("time", 110, 129, limit=-1)
        for row in rows:
            repo.delete(row.id)
    async with session() as s:
        left = await s.using(Item).range("time", -np.inf, np.inf, limit=-1)
    assert list(left.time) == [130, 131, 132, 133, 134]


async def test_data_survives_reconnect(filled, backend):
    from hetu.data.backend import Backend
    from tests.backend.conftest import INSTANCE

    again = Backend.from_url(backend.master.url)
    await again.open()
    try:
        async with again.session(INSTANCE, 1) as s:
            assert (await s.using(Item).get(name="Itm20")).time == 120
    finally:
        await again.close()


async def test_close_is_idempotent_and_later_use_fails(backend):
    from tests.backend.conftest import INSTANCE

    await backend.close()
    await backend.close()
    with pytest.raises(ConnectionError):
        async with backend.session(INSTANCE, 1) as s:
            await s.using(Item).get(id=1)


async def test_negative_row_ids_work_everywhere(backend, session):
    async with session() as s:
        repo = s.using(Item)
        for n, row_id in enumerate((-5, -(2**62), 3)):
            row = Item.new_row(id_=row_id)
            row.name, row.time = f"neg{n}", -n
            await repo.insert(row)
    async with session() as s:
        repo = s.using(Item)
        assert (await repo.get(id=-5)).name == "neg0"
        assert (await repo.get(name="neg1")).id == -(2**62)
        assert list((await repo.range(id=(-np.inf, np.inf), limit=-1)).id) == [-(2**62), -5, 3]
        assert list((await repo.range(time=(-2, 0), limit=-1)).id) == [3, -(2**62), -5]
        row = await repo.get(id=-5)
        row.time = -10
        await repo.update(row)
        dup = Item.new_row()
        dup.name, dup.time = "other", -10
        with pytest.raises(UniqueViolation):
            await repo.insert(dup)


def test_changed_fields_compares_the_stored_values():
    """What update() and the commit take for a change: the fields whose stored bytes
    differ, in column order (a NaN left as it was is no change; -0.0 for 0.0 is one)."""
    from hetu.data.backend.idmap import changed_fields

    old = Item.new_row()
    old.model, old.name, old.qty = np.nan, "abc", 3
    new = old.copy()
    assert changed_fields(new, old) == ()
    new.qty, new.name = 4, "abd"
    assert changed_fields(new, old) == ("name", "qty")  # the dtype's (alphabetical) order
    assert changed_fields(new, old, skip="qty") == ("name",)
    zero = Item.new_row()
    negative = zero.copy()
    negative.model = -0.0
    assert changed_fields(negative, zero) == ("model",)
    new._version = old._version + 1
    assert changed_fields(new, old, skip="_version") == ("name", "qty")
    assert changed_fields(new, old) == ("_version", "name", "qty")
