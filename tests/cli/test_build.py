"""`hetu build`: the C# and TypeScript row types of a namespace's client-readable components."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hetu.common.permission import Permission
from hetu.data.component import BaseComponent, make_schema_json
from hetu.sourcegen import csharp, typescript

APP = Path(__file__).parent / "build_app.py"
REPO = Path(__file__).parents[2]

# the reference indents the empty lines inside the namespace too; ···· marks them here
EXPECTED_CSHARP = """\
using HeTu;
using MessagePack;

namespace pytest_build
{
····
    [MessagePackObject]
    public class Every : IBaseComponent
    {
        [Key("id")] public long ID { get; set; }
        [Key("blob")] public byte[] Blob;
        [Key("f16")] public float F16;
        [Key("f32")] public float F32;
        [Key("f64")] public double F64;
        [Key("flag")] public sbyte Flag;
        [Key("i16")] public short I16;
        [Key("i32")] public int I32;
        [Key("i64")] public long I64;
        [Key("i8")] public sbyte I8;
        [Key("last_seen_ms")] public long LastSeenMs;
        [Key("title")] public string Title;
        [Key("u16")] public ushort U16;
        [Key("u32")] public uint U32;
        [Key("u64")] public ulong U64;
        [Key("u8")] public byte U8;
    }
····
····
    [MessagePackObject]
    public class Item : IBaseComponent
    {
        [Key("id")] public long ID { get; set; }
        [Key("count")] public int Count;
        [Key("owner")] public long Owner;
    }
····
}""".replace("····", "    ")

EXPECTED_TYPESCRIPT = """\
// Rows of the HeTu namespace pytest_build, written by `hetu build`.
// Edit the components on the server and build again rather than this file.

export interface Every {
  id: number | bigint;
  blob: Uint8Array;
  f16: number;
  f32: number;
  f64: number;
  flag: number;
  i16: number;
  i32: number;
  i64: number | bigint;
  i8: number;
  last_seen_ms: number | bigint;
  title: string;
  u16: number;
  u32: number;
  u64: number | bigint;
  u8: number;
}

export interface Item {
  id: number | bigint;
  count: number;
  owner: number | bigint;
}

export const COMPONENTS = ["Every", "Item"] as const;
export type ComponentName = (typeof COMPONENTS)[number];

export interface ComponentRows {
  Every: Every;
  Item: Item;
}
"""


def hetu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m hetu ...`` in a fresh process (the app registries are process-wide)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "hetu", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


def build(output: Path, *extra: str) -> subprocess.CompletedProcess:
    return hetu("build", f"--app-file={APP}", "--namespace=pytest_build", f"--output={output}", *extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One build of each language, shared by the tests that only read the output."""
    out = tmp_path_factory.mktemp("build")
    for name in ("Components.cs", "rows.ts"):
        result = build(out / name)
        assert result.returncode == 0, result.stderr
    return out


def test_csharp_output_is_exact(built):
    assert (built / "Components.cs").read_text(encoding="utf-8") == EXPECTED_CSHARP


def test_typescript_is_chosen_by_a_ts_suffix_and_is_exact(built):
    assert (built / "rows.ts").read_text(encoding="utf-8") == EXPECTED_TYPESCRIPT


def test_admin_unused_and_copied_components_are_not_written(built):
    text = (built / "Components.cs").read_text(encoding="utf-8")
    assert "Audit" not in text  # ADMIN
    assert "Unused" not in text  # in no system, so in no cluster
    assert text.count("class Item ") == 1 and "bank" not in text  # Item:bank is written as Item


def test_lang_option_overrides_the_suffix(tmp_path):
    result = build(tmp_path / "rows.txt", "--lang=typescript")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rows.txt").read_text(encoding="utf-8") == EXPECTED_TYPESCRIPT


def test_an_unchanged_file_is_not_rewritten(tmp_path):
    output = tmp_path / "nested" / "Components.cs"
    first = build(output)
    assert first.returncode == 0, first.stderr
    assert "wrote" in first.stdout and "2 components" in first.stdout
    past = 1_000_000_000
    os.utime(output, (past, past))
    second = build(output)
    assert second.returncode == 0, second.stderr
    assert "up to date, not rewritten" in second.stdout
    assert output.stat().st_mtime == past


def test_a_changed_file_is_rewritten(tmp_path):
    output = tmp_path / "Components.cs"
    output.write_text("stale", encoding="utf-8")
    result = build(output)
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == EXPECTED_CSHARP


def test_app_file_and_namespace_can_come_from_a_config_file(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.py").write_text(APP.read_text(encoding="utf-8"), encoding="utf-8")
    config = tmp_path / "config.yml"
    config.write_text("APP_FILE: app/app.py\nNAMESPACE: pytest_build\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a relative APP_FILE is relative to the config file; --output to the working directory
    result = hetu("build", f"--config={config}", "--output=out.cs", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "out.cs").read_text(encoding="utf-8") == EXPECTED_CSHARP


def test_an_unknown_namespace_is_a_clear_error(tmp_path):
    result = hetu("build", f"--app-file={APP}", "--namespace=nope", f"--output={tmp_path / 'x.cs'}")
    assert result.returncode == 1
    assert "namespace 'nope' has no system" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.cs").exists()


def test_a_missing_app_file_is_a_clear_error(tmp_path):
    result = hetu("build", f"--app-file={tmp_path / 'none.py'}", "--namespace=x", f"--output={tmp_path / 'x.cs'}")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_namespace_is_required_without_a_config(tmp_path):
    result = hetu("build", f"--app-file={APP}", f"--output={tmp_path / 'x.cs'}")
    assert result.returncode == 2
    assert "--namespace is required" in result.stderr


def test_help_describes_the_options():
    result = hetu("build", "--help")
    assert result.returncode == 0
    for option in ("--app-file", "--namespace", "--output", "--lang", "--config"):
        assert option in result.stdout


# -- the generators, on component classes built in place (not registered) ---------------------


def component(name: str, **fields: str) -> type[BaseComponent]:
    props = {field: {"default": 0, "unique": False, "index": False, "dtype": dtype} for field, dtype in fields.items()}
    props["id"] = {"default": 0, "unique": True, "index": True, "dtype": "<i8"}
    props["_version"] = {"default": 0, "unique": False, "index": False, "dtype": "<i4"}
    return BaseComponent.load_json(make_schema_json(
        namespace="pytest_sourcegen", name=name, permission=Permission.EVERYBODY, rls_compare=None,
        volatile=False, backend="default", properties=props))


@pytest.mark.parametrize(("field", "member"), [
    ("hp", "Hp"), ("last_seen_ms", "LastSeenMs"), ("bool_", "Bool"), ("int64b", "Int64b"),
    ("_private", "Private"), ("a__b", "AB"), ("camelCase", "CamelCase"), ("___", "Field"),
])
def test_csharp_property_names_are_pascal_case(field, member):
    assert csharp.csharp_property_name(field) == member


@pytest.mark.parametrize(("dtype", "cs"), [(">i8", "long"), ("<i8", "long"), ("<U8", "string"), ("|S4", "byte[]"),
                                           ("<f2", "float"), ("|u1", "byte")])
def test_csharp_types_ignore_byte_order(dtype, cs):
    assert csharp.csharp_type(np.dtype(dtype)) == cs


@pytest.mark.parametrize(("dtype", "ts"), [("<i8", "number | bigint"), ("<u8", "number | bigint"), ("<i4", "number"),
                                           ("<f8", "number"), ("<U8", "string"), ("|S4", "Uint8Array")])
def test_typescript_types(dtype, ts):
    assert typescript.typescript_type(np.dtype(dtype)) == ts


@pytest.mark.parametrize(("fields", "message"), [
    ({"a_b": "<i4", "aB": "<i4"}, "also the name of"),
    ({"i_d": "<i4"}, "also the name of Thing.id"),
    ({"thing": "<i4"}, "is the class name"),
    ({"_1st": "<i4"}, "starts with a digit"),
])
def test_csharp_member_names_that_would_not_compile_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        csharp.generate("Game", [component("Thing", **fields)])


def test_a_namespace_that_cannot_name_a_csharp_namespace_is_refused():
    with pytest.raises(ValueError, match="not a valid C# namespace"):
        csharp.generate("my-game", [])


def test_an_empty_namespace_still_gives_valid_files():
    assert csharp.generate("Game", []) == "using HeTu;\nusing MessagePack;\n\nnamespace Game\n{\n}"
    assert "export const COMPONENTS = [] as const;" in typescript.generate("Game", [])
