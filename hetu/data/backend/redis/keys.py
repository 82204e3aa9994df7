"""Redis key layout, sortable index encoding and row field codec.

Layout (compatible with HeTu's)::

    {instance}:{Comp}:{CLU<cid>}:id:{row_id}        HASH   one row, one field per column
    {instance}:{Comp}:{CLU<cid>}:index:{field}      ZSET   score 0, member = sortable(value) 0x00 id
    {instance}:{Comp}:meta                          HASH   json, version, cluster_id
    {instance}:{Comp}:{CLU<cid>}:changes            pub/sub channel of change events

The ``{CLU<cid>}`` hash tag keeps every key of one system cluster in one Redis Cluster
slot, so a commit touching several components is one atomic script call.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import Bounds
from ..table import TableReference

_INT_OFFSET = 1 << 63
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def table_prefix(ref: TableReference) -> str:
    """``<instance>:<component>``: the prefix of a table's non-row keys (its meta)."""
    return f"{ref.instance_name}:{ref.comp_name}"


_CLUSTER_PREFIXES: dict[TableReference, str] = {}


def cluster_prefix(ref: TableReference) -> str:
    """The table prefix with the Redis Cluster hash tag of the table's cluster id."""
    prefix = _CLUSTER_PREFIXES.get(ref)
    if prefix is None:
        prefix = f"{ref.instance_name}:{ref.comp_name}:{{CLU{ref.cluster_id}}}"
        if len(_CLUSTER_PREFIXES) < 65536:  # references are few; never grow without bound
            _CLUSTER_PREFIXES[ref] = prefix
    return prefix


def row_key(ref: TableReference, row_id: int) -> str:
    """The hash key of one row."""
    return f"{cluster_prefix(ref)}:id:{row_id}"


def index_key(ref: TableReference, field: str) -> str:
    """The sorted-set key of one indexed field."""
    return f"{cluster_prefix(ref)}:index:{field}"


def meta_key(ref: TableReference) -> str:
    """The key of a table's stored schema (json, version, cluster id)."""
    return f"{table_prefix(ref)}:meta"


def change_channel(ref: TableReference) -> str:
    """The pub/sub channel a table's commits publish their change events on (row ids and indexes touched)."""
    return f"{cluster_prefix(ref)}:changes"


# -- sortable encoding ------------------------------------------------------------------


def sortable(value: Any, kind: str) -> bytes:
    """Bytes whose lexicographic order is the order of the values of one column."""
    if kind == "i":
        return (int(value) + _INT_OFFSET).to_bytes(8, "big")
    if kind == "u":
        return int(value).to_bytes(8, "big")
    if kind == "f":
        v = float(value)
        bits = struct.unpack(">Q", struct.pack(">d", v))[0]
        bits = (bits | _SIGN) if v >= 0 else (bits ^ _ALL)  # -0.0 sorts as +0.0
        return bits.to_bytes(8, "big")
    if kind == "U":
        return str(value).encode("utf-8").replace(b"\x00", b"\x00\xff")
    if kind == "S":
        return bytes(value).replace(b"\x00", b"\x00\xff")
    raise ValueError(f"cannot index values of numpy kind {kind!r}")


def member(value: Any, kind: str, row_id: int) -> bytes:
    """An index member: the sortable value, a NUL, then the row id."""
    return sortable(value, kind) + b"\x00" + str(int(row_id)).encode()


def member_row_id(raw: bytes) -> int:
    """The row id at the end of an index member."""
    return int(raw[raw.rindex(b"\x00") + 1 :])


def lex_bounds(bounds: Bounds, kind: str) -> tuple[bytes, bytes]:
    """ZRANGE BYLEX bounds (low, high) of a normalised range."""
    low = sortable(bounds.low, kind) + (b"\x00" if bounds.low_inclusive else b"\x00\xff")
    high = sortable(bounds.high, kind) + (b"\x00\xff" if bounds.high_inclusive else b"\x00")
    return b"[" + low, b"[" + high


def unique_bounds(value: Any, kind: str) -> tuple[bytes, bytes]:
    """ZRANGE BYLEX bounds of every member holding exactly ``value``."""
    enc = sortable(value, kind)
    return b"[" + enc + b"\x00", b"[" + enc + b"\x00\xff"


# -- row codec ----------------------------------------------------------------------------


def _encode_float(v: Any) -> bytes:
    f = float(v)
    if math.isnan(f):
        return b"nan"
    return repr(f).encode()


def _field_encoder(kind: str) -> Callable[[Any], bytes]:
    if kind in ("i", "u"):
        return lambda v: str(int(v)).encode()
    if kind == "f":
        return _encode_float
    if kind == "U":
        return lambda v: str(v).encode("utf-8")
    if kind == "S":
        return bytes
    raise ValueError(f"cannot store values of numpy kind {kind!r}")


def _field_decoder(kind: str) -> Callable[[bytes], Any]:
    if kind in ("i", "u"):
        return int
    if kind == "f":
        return float
    if kind == "U":
        return lambda b: b.decode("utf-8", errors="replace")
    return bytes


class RowCodec:
    """Converts rows of one component to and from Redis hash fields."""

    def __init__(self, comp) -> None:
        self.comp = comp
        self.names = comp.dtypes.names
        self.kinds = {n: comp.dtype_map_[n].kind for n in self.names}
        self.bnames = [n.encode() for n in self.names]
        self._enc = {n: _field_encoder(self.kinds[n]) for n in self.names}
        self._dec = [_field_decoder(self.kinds[n]) for n in self.names]
        self._defaults = comp.default_row_[0].item()
        # building rows of a record dtype gives np.record items without going through a
        # recarray (its Python-level __array_finalize__ and __getitem__): ~4x faster
        self._rdtype = np.dtype((np.record, comp.dtypes))

    def encode_fields(self, row: np.record, fields: tuple[str, ...] | None = None) -> list:
        """Flat ``[field, value, ...]`` for HSET (all fields but _version by default)."""
        out: list = []
        for name in fields if fields is not None else self.names:
            if name == "_version":
                continue
            out.append(name)
            out.append(self._enc[name](row[name]))
        return out

    def _values(self, mapping: dict[bytes, bytes]) -> tuple:
        values = []
        for bname, dec, default in zip(self.bnames, self._dec, self._defaults):
            raw = mapping.get(bname)
            values.append(default if raw is None else dec(raw))
        return tuple(values)

    def decode(self, mapping: dict[bytes, bytes]) -> np.record:
        return np.array([self._values(mapping)], dtype=self._rdtype)[0]

    def decode_many(self, mappings: list[dict[bytes, bytes]]) -> np.recarray:
        if not mappings:
            return np.recarray(0, dtype=self.comp.dtypes)
        return np.array([self._values(m) for m in mappings], dtype=self._rdtype).view(np.recarray)
