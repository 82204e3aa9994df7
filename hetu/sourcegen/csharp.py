"""C# classes for the Unity client (MessagePack-CSharp), one per component.

Each class implements the client SDK's ``IBaseComponent``; fields keep their wire names in
``[Key("...")]`` attributes and get PascalCase member names::

    [MessagePackObject]
    public class Player : IBaseComponent
    {
        [Key("id")] public long ID { get; set; }
        [Key("last_seen_ms")] public long LastSeenMs;
    }
"""

from __future__ import annotations

import numpy as np

from ..common.csharp_keywords import CSHARP_KEYWORDS
from ..data.component import BaseComponent
from . import client_fields

# numpy dtype name (byte order does not matter) -> C# type
DTYPE_CS_MAP = {
    "int8": "sbyte",
    "int16": "short",
    "int32": "int",
    "int64": "long",
    "uint8": "byte",
    "uint16": "ushort",
    "uint32": "uint",
    "uint64": "ulong",
    "float16": "float",
    "float32": "float",
    "float64": "double",
}

INDENT = "    "
ID_LINE = '[Key("id")] public long ID { get; set; }'


def csharp_type(dtype: np.dtype) -> str:
    """The C# type of a field: ``int64`` -> ``long``, ``U32`` -> ``string``, ``S8`` -> ``byte[]``.

    Booleans are stored as int8 by ``define_component``, so they arrive as ``sbyte``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "U":
        return "string"
    if dtype.kind == "S":
        return "byte[]"
    try:
        return DTYPE_CS_MAP[dtype.name]
    except KeyError:
        raise ValueError(f"dtype {dtype.str} has no C# counterpart") from None


def csharp_property_name(field: str) -> str:
    """PascalCase member name of a field: ``last_seen_ms`` -> ``LastSeenMs``, ``hp`` -> ``Hp``.

    Leading and trailing underscores are dropped and each underscore-separated part gets
    an upper-case first letter (the rest is kept); a name of underscores only becomes
    ``Field``.
    """
    parts = [part for part in field.strip("_").split("_") if part]
    return "".join(part[0].upper() + part[1:] for part in parts) or "Field"


def _check_member_names(comp: type[BaseComponent]) -> None:
    """C# refuses what Python allows: two fields with one member name, a member named
    like its class, a name starting with a digit. Say which fields, before writing."""
    taken = {"ID": "id"}
    for field, _ in client_fields(comp):
        member = csharp_property_name(field)
        where = f"{comp.name_}.{field}"
        if member in taken:
            raise ValueError(f"{where}: its C# name {member} is also the name of {comp.name_}.{taken[member]}; "
                             f"rename one of the fields")
        if member == comp.name_:
            raise ValueError(f"{where}: its C# name {member} is the class name, which C# forbids; rename the field")
        if member[0].isdigit():
            raise ValueError(f"{where}: its C# name {member} starts with a digit; rename the field")
        taken[member] = field


def check_namespace(namespace: str) -> None:
    """Raise ``ValueError`` unless ``namespace`` can name a C# namespace."""
    for part in namespace.split("."):
        if not part.isidentifier() or part in CSHARP_KEYWORDS:
            raise ValueError(f"namespace {namespace!r} is not a valid C# namespace name "
                             f"(dot-separated identifiers that are not C# keywords)")


def generate_component(comp: type[BaseComponent]) -> list[str]:
    """The lines of one component's class, framed by an empty line on each side."""
    _check_member_names(comp)
    lines = ["", "[MessagePackObject]", f"public class {comp.name_} : IBaseComponent", "{", INDENT + ID_LINE]
    for field, dtype in client_fields(comp):
        lines.append(f'{INDENT}[Key("{field}")] public {csharp_type(dtype)} {csharp_property_name(field)};')
    lines += ["}", ""]
    return lines


def generate(namespace: str, components: list[type[BaseComponent]]) -> str:
    """The whole C# file: usings, then ``namespace <namespace>`` holding every class.

    The text has no trailing newline (as the reference's output).
    """
    check_namespace(namespace)
    lines = ["using HeTu;", "using MessagePack;", "", f"namespace {namespace}", "{"]
    for comp in components:
        lines += [INDENT + line for line in generate_component(comp)]
    lines.append("}")
    return "\n".join(lines)
