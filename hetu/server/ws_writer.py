"""Writing a websocket frame at once, from the fan-out, when the socket can take it.

A frame to an idle connection (a subscription push, an rpc reply) used to wake the
connection's send task: a queue hand-over, a task switch, Sanic's send lock and two
coroutines per frame, for every subscriber of a push. When nothing is queued before it
and the transport is not paused, the frame is framed and written right away instead;
otherwise it goes through the connection's queue as before, so the order of frames never
changes.

This reaches into Sanic's websocket (``ws_proto``: the websockets protocol object, whose
state says the connection is open and that no extension changes how frames are written;
``io_proto``: Sanic's transport protocol, whose ``_can_write`` event is cleared while
the transport is paused, and its transport). Frames are written here, as websockets
writes a server's unfragmented binary messages, to spare its per-frame work. :meth:`DirectWriter.of` returns None when
they are not there, and the queue is used for every frame; tests/server/test_ws_writer.py
names them, so a Sanic upgrade that moves them fails there instead of silently
switching this path off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.protocol import Side, State


class DirectWriter:
    """Frames and writes binary messages on one Sanic websocket without awaiting."""

    __slots__ = ("_ws", "_proto", "_io", "_can_write")

    def __init__(self, ws: Any, proto: Any, io: Any, can_write: asyncio.Event) -> None:
        self._ws, self._proto, self._io, self._can_write = ws, proto, io, can_write

    @classmethod
    def of(cls, ws: Any) -> DirectWriter | None:
        """The writer of a Sanic websocket, or None when it lacks the parts needed."""
        proto = getattr(ws, "ws_proto", None)
        io = getattr(ws, "io_proto", None)
        can_write = getattr(io, "_can_write", None)
        lock = getattr(ws, "conn_mutex", None)
        if proto is None or not isinstance(can_write, asyncio.Event) or not isinstance(lock, asyncio.Lock):
            return None
        # frames are written here as websockets would write them for a server without
        # extensions (no permessage-deflate: Sanic negotiates none): unmasked, unfragmented
        if getattr(proto, "side", None) is not Side.SERVER or getattr(proto, "extensions", None) != []:
            return None
        return cls(ws, proto, io, can_write)

    def ready(self) -> bool:
        """The socket takes a message now: open, not paused, no other send under way."""
        if self._proto.state is not State.OPEN or not self._can_write.is_set() or self._ws.conn_mutex.locked():
            return False
        transport = self._io.transport
        return transport is not None and not transport.is_closing()

    def send(self, data: bytes) -> None:
        """Write ``data`` as one binary message (check :meth:`ready` first): a final
        binary frame, unmasked as a server's are (RFC 6455 §5.2)."""
        size = len(data)
        if size < 126:
            header = bytes((0x82, size))
        elif size < 1 << 16:
            header = b"\x82\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x82\x7f" + size.to_bytes(8, "big")
        self._io.transport.write(header + data)
