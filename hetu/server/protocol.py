"""Wire-level constants and the frames built without a generic msgpack pass.

Subscription pushes are encoded here from pieces that were msgpack-encoded once per
change (the row payloads) and are reused for every subscriber: a :class:`~.pipeline.jsonb.Packed`
frame is already MessagePack; the pipeline only compresses and encrypts it per
connection.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from .pipeline.jsonb import Packed

REJECTED = "server rejected the request."
BAD_SUBS = ["sub", "fail", [{"id": 0, "info": "DEBUG MODE: server rejected the request."}]]

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)
NIL = _packer.pack(None)
_UPDT = _packer.pack("updt")
_SUB = _packer.pack("sub")


class ProtocolViolation(Exception):
    """The client broke the protocol: the connection is dropped."""


def row_to_wire(row: np.record) -> dict:
    """A row as the client sees it: plain values, no ``_version``."""
    return {name: value for name, value in zip(row.dtype.names, row.item()) if name != "_version"}


def pack(value: Any) -> bytes:
    """MessagePack of one value (a row payload, a row id, a sub id)."""
    return _packer.pack(value)


def pack_row(row: np.record) -> bytes:
    """MessagePack of one row as the wire shows it (see :func:`row_to_wire`)."""
    return _packer.pack(row_to_wire(row))


def updt_frame(packed_sub_id: bytes, items: list[tuple[bytes, bytes]]) -> Packed:
    """``["updt", sub_id, {row_id: row or None, ...}]`` from packed keys and values."""
    parts = [b"\x93", _UPDT, packed_sub_id, _map_header(len(items))]
    for key, value in items:
        parts.append(key)
        parts.append(value)
    return Packed(b"".join(parts))


def sub_range_frame(packed_sub_id: bytes, rows: list[bytes]) -> Packed:
    """``["sub", sub_id, [row, ...]]`` from packed rows."""
    return Packed(b"".join([b"\x93", _SUB, packed_sub_id, _array_header(len(rows)), *rows]))


def sub_get_frame(packed_sub_id: bytes, row: bytes) -> Packed:
    """``["sub", sub_id, row]`` from a packed row."""
    return Packed(b"".join([b"\x93", _SUB, packed_sub_id, row]))


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")
