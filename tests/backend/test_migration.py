"""Schema migrations (`hetu upgrade`'s engine) on every backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hetu
from hetu.data.backend import TableReference
from hetu.data.backend.base import TableStatus
from hetu.data.component import BaseComponent
from hetu.data.migration import MigrationError, upgrade_table
from tests.backend.conftest import INSTANCE


@hetu.define_component(namespace="pytest_mig", force=True)
class Gem(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    qty: np.int16 = hetu.property_field(5)
    name: "<U8" = hetu.property_field("", unique=True)


def changed(comp, drop=(), add=None, **retype):
    """``comp`` as it would be after an edit of its class (same name and namespace)."""
    data = json.loads(comp.json_)
    props = data["properties"]
    for name in drop:
        del props[name]
    for name, dtype in retype.items():
        props[name]["dtype"] = dtype
    for name, prop in (add or {}).items():
        props[name] = {"default": 0, "unique": False, "index": False, "dtype": "<i8", **prop}
    return BaseComponent.load_json(json.dumps(data))


async def fill(backend, comp, cluster_id=1, n=25):
    ref = TableReference(comp, INSTANCE, cluster_id)
    await backend.maintenance().create_table(ref)
    async with backend.session(INSTANCE, cluster_id) as s:
        for i in range(n):
            row = comp.new_row()
            row.owner, row.qty, row.name = i % 3, 100 + i, f"g{i}"
            await s.using(comp).insert(row)
    return ref


async def all_rows(backend, comp, cluster_id=1):
    async with backend.session(INSTANCE, cluster_id) as s:
        return await s.using(comp).range("id", 0, 2**63 - 1, limit=-1)


async def test_safe_changes_are_migrated_with_defaults_and_new_indexes(backend, tmp_path):
    await fill(backend, Gem)
    v2 = changed(Gem, qty="<i4", add={"level": {"default": 7, "index": True}})
    ref = TableReference(v2, INSTANCE, 1)
    assert (await backend.maintenance().check_table(ref))[0] == TableStatus.SCHEMA_MISMATCH

    report = await upgrade_table(backend, ref, tmp_path, drop_data=False)

    assert (report.action, report.rows) == ("migrated", 25)
    assert any("level is added" in n for n in report.notes) and any("lossless" in n for n in report.notes)
    assert (await backend.maintenance().check_table(ref))[0] == TableStatus.OK
    rows = await all_rows(backend, v2)
    assert sorted(rows.qty) == list(range(100, 125)) and set(rows.level) == {7}
    async with backend.session(INSTANCE, 1) as s:
        assert len(await s.using(v2).range("level", 7, 7, limit=-1)) == 25  # the new index works
        assert (await s.using(v2).get(name="g3")).qty == 103  # and the old unique one
    scripts = list((tmp_path / "maint" / "migration").glob("Gem_v*_to_v*.py"))
    assert len(scripts) == 1 and "def upgrade" in scripts[0].read_text()
    assert list((tmp_path / "maint" / "backup").glob("*.npy"))  # the old rows were saved first


async def test_lossy_changes_are_refused_without_drop_data(backend, tmp_path):
    await fill(backend, Gem)
    v2 = changed(Gem, drop=("qty",), name="<U2")
    ref = TableReference(v2, INSTANCE, 1)

    report = await upgrade_table(backend, ref, tmp_path, drop_data=False)

    assert report.action == "refused"
    assert any("qty is removed" in n for n in report.notes)
    assert any("name changes type" in n for n in report.notes)
    assert (await backend.maintenance().check_table(ref))[0] == TableStatus.SCHEMA_MISMATCH
    assert len(await all_rows(backend, Gem)) == 25  # untouched


async def test_drop_data_applies_lossy_changes(backend, tmp_path):
    await fill(backend, Gem, n=5)
    v2 = changed(Gem, drop=("qty",), name="<U4")
    report = await upgrade_table(backend, TableReference(v2, INSTANCE, 1), tmp_path, drop_data=True)
    assert report.action == "migrated"
    rows = await all_rows(backend, v2)
    assert "qty" not in rows.dtype.names and sorted(rows.name) == ["g0", "g1", "g2", "g3", "g4"]


async def test_a_change_that_breaks_a_unique_field_changes_nothing(backend, tmp_path):
    await fill(backend, Gem)
    v2 = changed(Gem, add={"badge": {"unique": True}})  # 25 rows would all hold 0
    with pytest.raises(MigrationError, match="unique"):
        await upgrade_table(backend, TableReference(v2, INSTANCE, 1), tmp_path, drop_data=False)
    assert len(await all_rows(backend, Gem)) == 25
    truncating = changed(Gem, name="<U1")  # g1, g10..g19 collide after truncation
    with pytest.raises(MigrationError, match="unique"):
        await upgrade_table(backend, TableReference(truncating, INSTANCE, 1), tmp_path, drop_data=True)
    assert sorted((await all_rows(backend, Gem)).qty) == list(range(100, 125))


async def test_cluster_and_schema_change_in_one_pass(backend, tmp_path):
    await fill(backend, Gem, cluster_id=1)
    v2 = changed(Gem, add={"qty_new": {"default": 1}})
    ref = TableReference(v2, INSTANCE, 2)
    assert (await backend.maintenance().check_table(ref))[0] == TableStatus.CLUSTER_MISMATCH
    report = await upgrade_table(backend, ref, tmp_path, drop_data=False)
    assert report.action == "migrated" and "cluster id 1 -> 2" in report.notes
    assert len(await all_rows(backend, v2, cluster_id=2)) == 25
    async with backend.session(INSTANCE, 2) as s:
        assert (await s.using(v2).get(name="g7")).qty == 107


async def test_an_edited_script_decides_how_rows_move(backend, tmp_path):
    await fill(backend, Gem, n=4)
    v2 = changed(Gem, drop=("qty",), add={"stock": {}})
    ref = TableReference(v2, INSTANCE, 1)
    assert (await upgrade_table(backend, ref, tmp_path, drop_data=False)).action == "refused"
    (script,) = (tmp_path / "maint" / "migration").glob("Gem_*.py")
    text = script.read_text()
    text = text.replace('    return default_prepare(DOWN_COMPONENT_MODEL, TARGET_COMPONENT_MODEL)', '    return "ok"')
    text = text.replace(
        "    return default_upgrade(rows, TARGET_COMPONENT_MODEL)",
        "    out = default_upgrade(rows, TARGET_COMPONENT_MODEL)\n    out.stock = rows.qty * 2\n    return out",
    )
    script.write_text(text)
    report = await upgrade_table(backend, ref, tmp_path, drop_data=False)
    assert report.action == "migrated"
    assert sorted((await all_rows(backend, v2)).stock) == [200, 202, 204, 206]


async def test_scripts_chain_through_versions(backend, tmp_path):
    await fill(backend, Gem, n=3)
    v2 = changed(Gem, add={"a": {"default": 1}})
    v3 = changed(v2, add={"b": {"default": 2}})
    # v1 -> v2 was written (and kept) when v2 was the code; now the code is v3
    folder = tmp_path / "maint" / "migration"
    folder.mkdir(parents=True)
    (folder / f"Gem_v{Gem.schema_version()}_to_v{v2.schema_version()}.py").write_text(
        "import numpy as np\n"
        "from hetu.data.component import BaseComponent\n"
        "from hetu.data.migration import default_upgrade\n"
        f"TARGET_COMPONENT_MODEL = BaseComponent.load_json({v2.json_!r})\n"
        "def prepare():\n    return 'ok'\n"
        "def upgrade(rows):\n    out = default_upgrade(rows, TARGET_COMPONENT_MODEL)\n"
        "    out.a = rows.qty\n    return out\n"
    )
    report = await upgrade_table(backend, TableReference(v3, INSTANCE, 1), tmp_path, drop_data=False)
    assert report.action == "migrated"
    rows = await all_rows(backend, v3)
    assert sorted(rows.a) == [100, 101, 102] and set(rows.b) == {2}
    assert len(list(folder.glob("Gem_*.py"))) == 2  # v2 -> v3 was generated


async def test_unchanged_and_missing_tables(backend, tmp_path):
    ref = TableReference(Gem, INSTANCE, 1)
    assert (await upgrade_table(backend, ref, tmp_path, drop_data=False)).action == "created"
    assert (await upgrade_table(backend, ref, tmp_path, drop_data=False)).action == "ok"
    assert not (tmp_path / "maint").exists()


@hetu.define_component(namespace="pytest_mig", force=True)
class Ore(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)
    weight: np.float64 = hetu.property_field(0)
    name: str = hetu.property_field("", dtype="U8")


async def test_a_table_stored_with_the_same_meaning_written_otherwise_is_served_as_it_is(backend, tmp_path):
    data = json.loads(Ore.json_)
    data["properties"]["weight"]["default"] = 0.0  # `property_field(0.0)` where the code says 0
    data["properties"]["name"]["dtype"] = "U8"
    stored = BaseComponent.load_json(json.dumps(data))
    assert stored.schema_version() != Ore.schema_version()
    await fill(backend, stored, n=0)
    ref = TableReference(Ore, INSTANCE, 1)
    status, meta = await backend.maintenance().check_table(ref)
    assert status == TableStatus.OK and meta.version == stored.schema_version()
    report = await upgrade_table(backend, ref, tmp_path, drop_data=False)
    assert report.action == "ok" and not (tmp_path / "maint").exists()
    data["properties"]["weight"]["default"] = 0.5  # a real change stays one
    changed_default = BaseComponent.load_json(json.dumps(data))
    assert (await backend.maintenance().check_table(TableReference(changed_default, INSTANCE, 1)))[0] == \
        TableStatus.SCHEMA_MISMATCH


@hetu.define_component(namespace="pytest_mig", force=True, volatile=True)
class Buff(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, index=True)


async def test_volatile_tables_are_recreated_empty(backend, tmp_path):
    ref = TableReference(Buff, INSTANCE, 1)
    await backend.maintenance().create_table(ref)
    async with backend.session(INSTANCE, 1) as s:
        await s.using(Buff).insert(Buff.new_row())
    v2 = changed(Buff, drop=("owner",))  # lossy, but nothing in a volatile table is kept
    report = await upgrade_table(backend, TableReference(v2, INSTANCE, 1), tmp_path, drop_data=False)
    assert report.action == "recreated"
    assert len(await all_rows(backend, v2)) == 0
    assert (await backend.maintenance().check_table(TableReference(v2, INSTANCE, 1)))[0] == TableStatus.OK


async def test_long_migrations_log_their_progress(backend, tmp_path, monkeypatch, caplog):
    import hetu.data.migration as migration

    monkeypatch.setattr(migration, "INSERT_BATCH", 4)
    await fill(backend, Gem, n=10)
    v2 = changed(Gem, add={"extra": {}})
    with caplog.at_level("INFO", logger="HeTu.root"):
        await upgrade_table(backend, TableReference(v2, INSTANCE, 1), tmp_path, drop_data=False)
    assert "Gem: 10 of 10 rows written (100%)" in caplog.text
