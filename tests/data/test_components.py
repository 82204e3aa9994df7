"""Declaring components: dtypes, metadata, rows, copies and every definition error."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import operator
from pathlib import Path

import numpy as np
import pytest

import hetu
from hetu.data.component import (
    NUMPY_ROW_ATTRIBUTES,
    ComponentDefines,
    ComponentDefinitionError,
    Property,
    schema_meaning,
)

NS = "pytest_def"


def define(body: dict, name: str = "Thing", **kwargs):
    """Define a component class from ``{field: (annotation, property)}``."""
    annotations = {k: v[0] for k, v in body.items()}
    attrs = {k: v[1] for k, v in body.items() if v[1] is not None}
    cls = type(name, (hetu.BaseComponent,), {"__annotations__": annotations, **attrs, "__module__": __name__})
    kwargs.setdefault("namespace", NS)
    kwargs.setdefault("force", True)
    return hetu.define_component(**kwargs)(cls)


def test_fields_are_removed_from_the_class_and_sorted_with_implicit_columns():
    comp = define({"hp": (np.int32, hetu.property_field(100)), "ammo": (int, hetu.property_field(0)),
                   "Zed": (float, hetu.property_field(0.0))})
    with pytest.raises(AttributeError):
        comp.hp  # noqa: B018
    names = [n for n, _ in comp.properties_]
    assert names == ["Zed", "_version", "ammo", "hp", "id"]  # plain string order
    props = dict(comp.properties_)
    assert props["id"] == Property(0, True, True, "<i8")
    assert props["_version"] == Property(0, False, False, "<i4")
    assert props["ammo"].dtype == "<i8" and props["Zed"].dtype == "<f8" and props["hp"].dtype == "<i4"
    assert comp.dtypes.names == tuple(names)


@pytest.mark.parametrize("spelling", [bool, np.bool_, "?", "bool", "|b1", "<b1"])
def test_every_bool_spelling_is_stored_as_int8(spelling):
    comp = define({"flag": (spelling, hetu.property_field(False))})
    assert comp.dtype_map_["flag"] == np.dtype(np.int8)


def test_b_is_int8_not_bool_and_string_annotations_work():
    comp = define({
        "small": ("b", hetu.property_field(0)),
        "name": ("<U16", hetu.property_field("", unique=True)),
        "raw": ("S8", hetu.property_field(b"", index=True)),
        "count": ("np.int64", hetu.property_field(0)),  # as `from __future__ import annotations` gives
        "text": (str, hetu.property_field("", dtype="U32")),
    })
    assert comp.dtype_map_["small"] == np.dtype(np.int8)
    assert comp.dtype_map_["name"].str == "<U16" and comp.dtype_map_["raw"].str == "|S8"
    assert comp.dtype_map_["count"] == np.dtype(np.int64) and comp.dtype_map_["text"].str == "<U32"
    assert comp.indexes_ == {"name": True, "raw": True, "id": False}
    assert comp.uniques_ == {"name", "id"}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.float16, np.float32])
def test_numeric_dtypes_are_kept(dtype):
    comp = define({"v": (dtype, hetu.property_field(0))})
    assert comp.dtype_map_["v"] == np.dtype(dtype)


def test_unique_implies_index_and_warns_when_index_is_refused(caplog):
    with caplog.at_level(logging.WARNING, logger="HeTu.root"):
        comp = define({"a": (int, hetu.property_field(0, unique=True))})
    assert not caplog.records and dict(comp.properties_)["a"].index is True
    with caplog.at_level(logging.WARNING, logger="HeTu.root"):
        comp = define({"a": (int, hetu.property_field(0, unique=True, index=False))})
    assert any("index" in r.getMessage() for r in caplog.records)
    assert dict(comp.properties_)["a"].index is True


BAD_DEFINITIONS = [
    ({"x": (int, 5)}, "not a Property"),
    ({}, "at least one"),
    ({"id": (int, hetu.property_field(0))}, "reserved"),
    ({"_version": (int, hetu.property_field(0))}, "reserved"),
    ({"s": (str, hetu.property_field(""))}, "fixed width"),
    ({"s": (bytes, hetu.property_field(b""))}, "fixed width"),
    ({"c": (complex, hetu.property_field(0))}, "not supported"),
    ({"o": (object, hetu.property_field(0))}, "not supported"),
    ({"t": ("datetime64[s]", hetu.property_field(0))}, "not supported"),
    ({"v": (np.int8, hetu.property_field(None))}, "None"),
    ({"v": (np.int8, hetu.property_field("0"))}, "does not fit"),
    ({"v": (np.int8, hetu.property_field(300))}, "does not fit"),
    ({"v": (int, hetu.property_field(1.0))}, "does not fit"),
    ({"v": ("U8", hetu.property_field(99999999999))}, "does not fit"),
    ({"v": ("U4", hetu.property_field("toolong"))}, "does not fit"),
    ({"v": (np.uint8, hetu.property_field(-1))}, "does not fit"),
    ({"bool": (int, hetu.property_field(0))}, "Python keyword"),
    ({"class": (int, hetu.property_field(0))}, "Python keyword"),
    ({"sbyte": (int, hetu.property_field(0))}, "C#"),
    ({"data": (int, hetu.property_field(0))}, "NumPy"),
    ({"size": (int, hetu.property_field(0))}, "NumPy"),
    ({"shape": (int, hetu.property_field(0))}, "NumPy"),
    ({"dtype": (int, hetu.property_field(0))}, "NumPy"),
    ({"item": (int, hetu.property_field(0))}, "NumPy"),
]


@pytest.mark.parametrize("body, message", BAD_DEFINITIONS)
def test_invalid_definitions_fail_at_definition_time(body, message):
    with pytest.raises(ComponentDefinitionError, match=message) as err:
        define(body)
    assert isinstance(err.value, ValueError) and isinstance(err.value, AssertionError)


def test_a_property_without_annotation_is_refused():
    cls = type("Loose", (hetu.BaseComponent,), {"__annotations__": {"a": int}, "a": hetu.property_field(0),
                                                  "b": hetu.property_field(0)})
    with pytest.raises(ComponentDefinitionError, match="annotation"):
        hetu.define_component(namespace=NS, force=True)(cls)


def test_class_must_subclass_base_component_and_not_be_a_csharp_keyword():
    class Plain:
        a: int = hetu.property_field(0)

    with pytest.raises(ComponentDefinitionError, match="BaseComponent"):
        hetu.define_component(namespace=NS)(Plain)
    with pytest.raises(ComponentDefinitionError, match="C#"):
        define({"a": (int, hetu.property_field(0))}, name="sbyte")


def test_redefinition_needs_force():
    define({"a": (int, hetu.property_field(0))}, name="Once", force=False, namespace="pytest_once")
    with pytest.raises(ComponentDefinitionError, match="already defined"):
        define({"a": (int, hetu.property_field(0))}, name="Once", force=False, namespace="pytest_once")
    again = define({"b": (int, hetu.property_field(0))}, name="Once", force=True, namespace="pytest_once")
    assert ComponentDefines().get_component("pytest_once", "Once") is again


def test_owner_permission_needs_a_numeric_owner():
    comp = define({"owner": (np.int64, hetu.property_field(0))}, permission=hetu.Permission.OWNER)
    assert comp.rls_compare_ == (operator.eq, "owner", "caller") and comp.is_rls()
    with pytest.raises(ComponentDefinitionError, match="owner"):
        define({"who": (np.int64, hetu.property_field(0))}, permission=hetu.Permission.OWNER)
    with pytest.raises(ComponentDefinitionError, match="owner"):
        define({"owner": ("U8", hetu.property_field(""))}, permission=hetu.Permission.OWNER)
    with pytest.raises(ComponentDefinitionError, match="rls_compare"):
        define({"owner": (np.int64, hetu.property_field(0))}, permission=hetu.Permission.OWNER,
               rls_compare=("eq", "owner", "caller"))


@pytest.mark.parametrize("rls, message", [
    (None, "three strings"), (("eq", "team"), "three strings"), (("eq", "team", 1), "three strings"),
    (("nope", "team", "team"), "operator"), (("eq", "missing", "team"), "not a property"),
])
def test_rls_compare_is_validated(rls, message):
    with pytest.raises(ComponentDefinitionError, match=message):
        define({"team": (np.int64, hetu.property_field(0))}, permission=hetu.Permission.RLS, rls_compare=rls)


def test_rls_compare_is_resolved_to_an_operator():
    comp = define({"team": (np.int64, hetu.property_field(0))}, permission=hetu.Permission.RLS,
                  rls_compare=("eq", "team", "team_id"))
    assert comp.rls_compare_ == (operator.eq, "team", "team_id") and comp.is_rls()


def test_new_rows_carry_defaults_and_fresh_ids():
    comp = define({"x": (np.int16, hetu.property_field(88)), "s": ("U4", hetu.property_field("ab"))})
    row = comp.new_row()
    assert isinstance(row, np.record) and row.x == 88 and row.s == "ab" and row._version == 0 and row.id > 0
    assert comp.new_row(id_=0).id == 0
    rows = comp.new_rows(5)
    assert isinstance(rows, np.recarray) and list(rows.x) == [88] * 5
    assert list(rows.id) == sorted(set(rows.id)) and rows.id[0] > row.id
    row.x = 1
    assert comp.new_row().x == 88  # rows are independent copies


def test_dict_round_trip_and_string_widths():
    comp = define({"x": (np.int16, hetu.property_field(0)), "s": ("U32", hetu.property_field("")),
                   "b": ("S16", hetu.property_field(b""))})
    row = comp.new_row()
    row.x, row.s, row.b = 5, "héllo", b"\x01\x02"
    data = comp.struct_to_dict(row)
    assert data == {"_version": 0, "b": b"\x01\x02", "id": int(row.id), "s": "héllo", "x": 5}
    assert comp.dict_to_struct(data) == row
    assert comp.str_max_len("s") == 32 and comp.str_max_len("b") == 16
    with pytest.raises(ValueError, match="not a string"):
        comp.str_max_len("x")


def test_duplicates_are_cached_copies_with_their_own_name():
    comp = define({"hp": (np.int32, hetu.property_field(1))}, name="Health")
    copy = comp.duplicate(NS, "copy")
    assert copy.name_ == "Health:copy" and copy.master_ is comp and copy.namespace_ == NS
    assert copy.properties_ == comp.properties_ and copy.instances_ == {}
    assert comp.duplicate(NS, "copy") is copy
    assert comp.get_duplicates(NS) == {"copy": copy}
    assert comp.duplicate(NS, "") is comp
    assert copy.schema_version() != comp.schema_version()


def test_schema_json_matches_the_reference_layout():
    comp = define({"zeta": (np.int8, hetu.property_field(1, index=True)), "alpha": ("U4", hetu.property_field("a"))},
                  name="Shape", permission=hetu.Permission.EVERYBODY, volatile=True)
    data = json.loads(comp.json_)
    assert list(data) == ["namespace", "name", "permission", "rls_compare", "volatile", "readonly", "backend", "properties"]
    assert list(data["properties"]) == ["zeta", "alpha", "id", "_version"]  # declaration order
    assert data["properties"]["zeta"] == {"default": 1, "unique": False, "index": True, "dtype": "|i1"}
    assert data["permission"] == "EVERYBODY" and data["volatile"] is True and data["readonly"] is False
    assert comp.schema_version() == hashlib.md5(comp.json_.encode()).hexdigest()


def test_any_definition_change_changes_the_schema_version():
    base = define({"a": (np.int32, hetu.property_field(0))}, name="Ver")
    versions = {base.schema_version()}
    versions.add(define({"a": (np.int32, hetu.property_field(1))}, name="Ver").schema_version())
    versions.add(define({"a": (np.int32, hetu.property_field(0, index=True))}, name="Ver").schema_version())
    versions.add(define({"a": (np.int32, hetu.property_field(0))}, name="Ver", permission=hetu.Permission.ADMIN).schema_version())
    versions.add(define({"a": (np.int64, hetu.property_field(0))}, name="Ver").schema_version())
    assert len(versions) == 5


def test_clear_keeps_the_core_namespace():
    define({"a": (int, hetu.property_field(0))}, name="Temp", namespace="pytest_clear")
    registry = ComponentDefines()
    core = registry.get_all("core")
    assert core  # Connection, WorkerLease
    registry.clear()
    assert registry.get_all("pytest_clear") == [] and registry.get_all("core") == core


# -- the engine's own tables and schema meaning ---------------------------------------

HETU_FIXTURE = Path(__file__).parents[1] / "ops" / "fixtures" / "hetu-9d054b5-chat-redis.json"


def _hetu_meta(name: str) -> dict:
    keys = json.loads(HETU_FIXTURE.read_text(encoding="utf-8"))
    return {k: v["utf8"] for k, v in keys[f"dev:{name}:meta"]["value"].items()}


@pytest.mark.parametrize("module, name", [
    ("hetu.endpoint.connection", "Connection"),
    ("hetu.system.future", "FutureCalls"),
    ("hetu.data.backend.worker_keeper", "WorkerLease"),
])
def test_built_in_tables_are_stored_exactly_as_hetu_stores_them(module, name):
    comp = getattr(importlib.import_module(module), name)
    meta = _hetu_meta(name)
    assert comp.json_ == meta["json"]
    assert comp.schema_version() == meta["version"]


def test_the_connection_device_column_keeps_its_hetu_name_and_is_read_by_key():
    from hetu.endpoint.connection import Connection

    assert "device" in Connection.dtype_map_ and "device_name" not in Connection.dtype_map_
    row = Connection.new_row()
    row.device = "phone"  # assignment reaches the column
    assert row["device"] == "phone"


@pytest.mark.skipif("device" not in NUMPY_ROW_ATTRIBUTES, reason="this NumPy has no ndarray.device")
def test_only_the_built_in_connection_may_use_a_numpy_shadowed_name():
    with pytest.raises(ComponentDefinitionError, match="NumPy"):
        define({"device": (str, hetu.property_field("", dtype="U32"))}, name="Connection")
    with pytest.raises(ComponentDefinitionError, match="NumPy"):
        define({"device": (str, hetu.property_field("", dtype="U32"))}, name="Connection", namespace="Game")


def test_system_lock_float_default_is_written_as_hetu_writes_it():
    from hetu.system.lock import SystemLock

    assert json.loads(SystemLock.json_)["properties"]["called"]["default"] == 0
    assert '"called": {"default": 0,' in SystemLock.json_


def _respelled(comp, **edits) -> str:
    data = json.loads(comp.json_)
    for name, prop in edits.items():
        data["properties"][name].update(prop)
    return json.dumps(data)


def test_equal_schemas_written_differently_are_the_same_schema():
    comp = define({"hp": (np.float64, hetu.property_field(0)), "name": (str, hetu.property_field("", dtype="U8")),
                   "alive": (bool, hetu.property_field(True))})
    for stored in (
        _respelled(comp, hp={"default": 0.0}),
        _respelled(comp, name={"dtype": "U8"}),
        _respelled(comp, alive={"default": 1, "dtype": "|b1"}),
        json.dumps(json.loads(comp.json_), separators=(",", ":")),
    ):
        assert stored != comp.json_
        assert comp.same_schema(stored)
        assert schema_meaning(stored) == schema_meaning(comp.json_)


@pytest.mark.parametrize("edit", [
    {"hp": {"default": 1}},
    {"hp": {"dtype": "<f4"}},
    {"name": {"dtype": "<U9"}},
    {"hp": {"index": True}},
    {"name": {"unique": True}},
])
def test_a_different_meaning_is_a_schema_change(edit):
    comp = define({"hp": (np.float64, hetu.property_field(0)), "name": (str, hetu.property_field("", dtype="U8"))})
    assert not comp.same_schema(_respelled(comp, **edit))


def test_other_table_settings_are_part_of_the_meaning():
    comp = define({"hp": (np.float64, hetu.property_field(0))})
    for key, value in (("volatile", True), ("permission", "ADMIN"), ("backend", "other"), ("name", "Other")):
        data = json.loads(comp.json_)
        data[key] = value
        assert not comp.same_schema(json.dumps(data)), key
    assert not comp.same_schema("") and not comp.same_schema("{not json")
