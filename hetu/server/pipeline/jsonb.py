"""``jsonb``: MessagePack serialisation (the name is the reference's)."""

from __future__ import annotations

from typing import Any

import msgpack

from .layer import MessageProcessLayer


class JSONBinaryLayer(MessageProcessLayer, alias="jsonb"):
    """Python objects <-> MessagePack bytes (lists/dicts at the top level)."""

    handshake_required = False

    def __init__(self, max_depth: int = 64) -> None:
        self.max_depth = max_depth

    def encode(self, ctx: Any, data: Any) -> bytes:
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
        return value
