"""TypeScript interfaces of the rows a web client receives, one per component.

Field names are the wire names. 64-bit integers are ``number | bigint`` because msgpack
decoders return a ``bigint`` for values beyond ``Number.MAX_SAFE_INTEGER`` (snowflake ids
always are) or for every int64, depending on their options::

    export interface Player {
      id: number | bigint;
      name: string;
      online: number;
      owner: number | bigint;
    }

    export const COMPONENTS = ["Player"] as const;
"""

from __future__ import annotations

import numpy as np

from ..data.component import BaseComponent
from . import client_fields

INDENT = "  "
WIDE_INTEGER = "number | bigint"
# names a TypeScript interface cannot take (reserved words and predefined type names)
RESERVED_TYPE_NAMES = frozenset(
    """
    any bigint boolean break case catch class const continue debugger default delete do
    else enum export extends false finally for function if implements import in instanceof
    interface let never new null number object package private protected public return
    static string super switch symbol this throw true try type typeof undefined unknown var
    void while with yield
    """.split()
) | {"ComponentName", "ComponentRows"}  # declared by the module itself


def typescript_type(dtype: np.dtype) -> str:
    """The TypeScript type of a field: ``int32`` -> ``number``, ``int64`` -> ``number | bigint``,
    ``U32`` -> ``string``, ``S8`` -> ``Uint8Array``.

    Booleans are stored as int8 by ``define_component`` and arrive as ``0``/``1``: ``number``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "U":
        return "string"
    if dtype.kind == "S":
        return "Uint8Array"
    if dtype.kind in ("i", "u"):
        return WIDE_INTEGER if dtype.itemsize == 8 else "number"
    if dtype.kind == "f":
        return "number"
    raise ValueError(f"dtype {dtype.str} has no TypeScript counterpart")


def generate_interface(comp: type[BaseComponent]) -> list[str]:
    """The lines of one component's interface."""
    if comp.name_ in RESERVED_TYPE_NAMES:
        raise ValueError(f"component {comp.name_}: the name is reserved in the TypeScript module; "
                         f"rename the component")
    lines = [f"export interface {comp.name_} {{", f"{INDENT}id: {WIDE_INTEGER};"]
    for field, dtype in client_fields(comp):
        lines.append(f"{INDENT}{field}: {typescript_type(dtype)};")
    lines.append("}")
    return lines


def generate(namespace: str, components: list[type[BaseComponent]]) -> str:
    """The whole TypeScript module: a comment, the interfaces, then ``COMPONENTS`` (the
    names), ``ComponentName`` and ``ComponentRows`` (name -> row type)."""
    lines = [
        f"// Rows of the HeTu namespace {namespace}, written by `hetu build`.",
        "// Edit the components on the server and build again rather than this file.",
    ]
    for comp in components:
        lines += ["", *generate_interface(comp)]
    names = ", ".join(f'"{comp.name_}"' for comp in components)
    lines += ["", f"export const COMPONENTS = [{names}] as const;",
              "export type ComponentName = (typeof COMPONENTS)[number];", ""]
    lines.append("export interface ComponentRows {")
    lines += [f"{INDENT}{comp.name_}: {comp.name_};" for comp in components]
    lines.append("}")
    return "\n".join(lines) + "\n"
