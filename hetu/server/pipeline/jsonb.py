"""``jsonb``: MessagePack serialisation (the name is the reference's)."""

from __future__ import annotations

from typing import Any

import msgpack

from .layer import MessageProcessLayer


class Packed(bytes):
    """A message that is already MessagePack (built from pre-encoded parts): the
    ``jsonb`` layer passes it through as it is."""

    __slots__ = ()


class JSONBinaryLayer(MessageProcessLayer, alias="jsonb"):
    """Python objects <-> MessagePack bytes (lists/dicts at the top level).

    A decoded message nested deeper than ``max_depth`` arrays/maps is undecodable (the
    server drops the connection): the values reach app code, logging and ``repr``,
    which recurse, and msgpack itself stops at about 1,000 levels anyway.
    """

    handshake_required = False

    def __init__(self, max_depth: int = 64) -> None:
        self.max_depth = max_depth

    def encode(self, ctx: Any, data: Any) -> bytes:
        if type(data) is Packed:
            return data
        if not isinstance(data, (list, tuple, dict)):
            raise TypeError(f"a message must be a list or dict, got {type(data).__name__}")
        return msgpack.packb(data, use_bin_type=True)

    def decode(self, ctx: Any, data: bytes) -> Any:
        try:
            value = msgpack.unpackb(
                data, raw=False, strict_map_key=False, use_list=True,
                max_array_len=len(data), max_map_len=len(data),
            )
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise ValueError(f"undecodable message: {exc}") from None
        if not isinstance(value, (list, dict)):
            raise ValueError(f"a message must be a msgpack array or map, got {type(value).__name__}")
        if _depth_exceeds(value, self.max_depth):
            raise ValueError(f"undecodable message: nested deeper than {self.max_depth} levels")
        return value


def _depth_exceeds(value: list | dict, max_depth: int) -> bool:
    """Whether arrays/maps nest more than ``max_depth`` levels (``value`` is level 1);
    iterative, so a deep value cannot exhaust the stack here."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False
