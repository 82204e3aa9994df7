"""Reading a client's websocket messages without Sanic's receive machinery.

Sanic gives every chunk of bytes to the websockets library's protocol object, whose
parser is a stack of Python generators, then creates a task per chunk that carries
the frames through a lock into its frame assembler, where ``recv()`` waits on events
behind another lock: per message a task, three locks, two events and a dozen
coroutine steps.

:class:`HetuWebSocketProtocol`, the protocol class ``hetu start`` serves with, puts a
:class:`FrameReader` in front of all that the moment a connection becomes a websocket
(before the event loop can hand it a byte). The reader parses and unmasks data frames
itself, joins fragmented messages, and hands whole messages to the connection's
receive loop through a deque and at most one future. Control frames (ping, pong,
close) and frames it does not take (reserved bits, unmasked, unknown opcodes, bad
control frames) go to Sanic's path unchanged, always as whole frames, so the
websockets protocol object stays on a frame boundary and keeps answering pings,
tracking pongs, closing and failing connections exactly as before. From a close frame
or a frame it does not take on, every byte goes to Sanic's path.

Sanic's parts used here: the protocol's ``websocket`` (``WebsocketImplProtocol``),
its ``data_received``, ``ws_proto`` (``max_size``, ``state``), ``recv_cancel`` (the
future Sanic cancels when the peer closes or the stream ends), ``fail_connection`` and
the transport's ``pause_reading``/``resume_reading``; tests/server/test_ws_reader.py
checks each, so an upgrade that moves one fails there.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.frames import apply_mask
from websockets.protocol import State

# reading pauses while this many messages wait for the receive loop (a client that
# sends faster than its calls are handled); it resumes when the loop has taken them
PAUSE_AT = 16

_CONTROL = 8  # opcodes from here on are control frames
_CLOSE = 8
_PROTOCOL_ERROR, _INVALID_DATA, _TOO_BIG = 1002, 1007, 1009


class FrameReader:
    """The messages of one websocket, parsed from its bytes; one reader at a time."""

    __slots__ = ("_ws", "_to_sanic", "_transport", "_max_size", "_buf", "_messages", "_waiter",
                 "_cancel", "_closed", "_delegating", "_paused", "_frag", "_frag_size", "_frag_text",
                 "_loop")

    def __init__(self, ws: Any, transport: Any) -> None:
        self._ws = ws
        self._to_sanic = ws.data_received  # Sanic's path, for what this reader does not take
        self._transport = transport
        self._max_size: int | None = ws.ws_proto.max_message_size
        self._buf = b""  # the start of a frame not wholly received yet
        self._messages: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._delegating = False
        self._paused = False
        self._frag: list[bytes] | None = None  # the frames so far of a fragmented message
        self._frag_size = 0
        self._frag_text = False
        self._loop = asyncio.get_running_loop()
        self._cancel: asyncio.Future | None = None
        self._watch_close()

    @staticmethod
    def of(ws: Any) -> FrameReader | None:
        """The reader installed on a Sanic websocket, or None (not served by
        :class:`HetuWebSocketProtocol`: read with ``ws.recv()``)."""
        return getattr(getattr(ws, "io_proto", None), "hetu_reader", None)

    # -- the receive loop's side --------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> bytes | str | None:
        """The next message; None once the connection is closing or closed.
        ``TimeoutError`` when ``timeout`` seconds pass without one."""
        if self._closed or self._ws.ws_proto.state is not State.OPEN:
            return None
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._paused and not messages:
                self._paused = False
                self._transport.resume_reading()
            return message
        if self._waiter is not None:
            raise RuntimeError("another task is already waiting for a message")
        if self._ws.recv_cancel is not self._cancel:  # someone used Sanic's recv() meanwhile
            self._watch_close()
        waiter = self._waiter = self._loop.create_future()
        try:
            if timeout is None:
                return await waiter
            async with asyncio.timeout(timeout):
                return await waiter
        finally:
            self._waiter = None

    def _watch_close(self) -> None:
        self._cancel = self._loop.create_future()
        self._cancel.add_done_callback(self._peer_closed)
        self._ws.recv_cancel = self._cancel

    def _peer_closed(self, _: asyncio.Future) -> None:
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._messages.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the protocol's side ----------------------------------------------------------------

    def _deliver(self, message: bytes | str) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            self._waiter = None  # a second message of the same chunk waits in the deque
            return
        self._messages.append(message)

    def _delegate(self, rest: bytes) -> None:
        """Everything from here on goes to Sanic's path."""
        self._delegating = True
        self._frag = None
        if rest:
            self._to_sanic(rest)
        if self._ws.ws_proto.state is not State.OPEN:  # a close frame, or websockets failed it
            self._close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error the websockets parser cannot see (it does not know the
        fragments taken here): close as it would, with ``code``."""
        self._delegating = True
        self._frag = None
        self._close()
        self._ws.fail_connection(code, reason)

    def feed(self, data: bytes) -> None:
        """Bytes from the socket (the protocol's ``data_received``)."""
        if self._delegating:
            self._to_sanic(data)
            return
        if self._buf:
            data = self._buf + data
            self._buf = b""
        end = len(data)
        pos = 0
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end - head < 2:
                    break
                length = int.from_bytes(data[head:head + 2], "big")
                head += 2
            elif length == 127:
                if end - head < 8:
                    break
                length = int.from_bytes(data[head:head + 8], "big")
                head += 8
            if (b0 & 0x70 or not b1 & 0x80 or 2 < opcode < _CONTROL or opcode > 10
                    or (opcode >= _CONTROL and (length > 125 or not b0 & 0x80))):
                # reserved bits, an unmasked frame, an unknown opcode or a bad control
                # frame: the websockets parser fails the connection as it always did
                self._delegate(data[pos:])
                return
            if opcode < _CONTROL and self._max_size is not None and length > self._max_size - self._frag_size:
                self._fail(_TOO_BIG, f"message over {self._max_size} bytes")
                return
            stop = head + 4 + length
            if stop > end:
                break
            if opcode >= _CONTROL:
                if opcode == _CLOSE:
                    self._delegate(data[pos:])
                    return
                self._to_sanic(data[pos:stop])  # a ping or a pong, whole
                pos = stop
                continue
            payload = apply_mask(data[head + 4:stop], data[head:head + 4])
            pos = stop
            if opcode:  # the first (or only) frame of a message
                if self._frag is not None:
                    self._fail(_PROTOCOL_ERROR, "expected a continuation frame")
                    return
                if b0 & 0x80:
                    if opcode == 1:
                        if not self._deliver_text(payload):
                            return
                    else:
                        self._deliver(payload)
                    continue
                self._frag, self._frag_size, self._frag_text = [payload], length, opcode == 1
                continue
            if self._frag is None:
                self._fail(_PROTOCOL_ERROR, "unexpected continuation frame")
                return
            self._frag.append(payload)
            self._frag_size += length
            if b0 & 0x80:
                message = b"".join(self._frag)
                text = self._frag_text
                self._frag, self._frag_size = None, 0
                if text:
                    if not self._deliver_text(message):
                        return
                else:
                    self._deliver(message)
        if pos < end:
            self._buf = data[pos:]
        if len(self._messages) >= PAUSE_AT and not self._paused and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def _deliver_text(self, payload: bytes) -> bool:
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            self._fail(_INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return False
        self._deliver(text)
        return True


class HetuWebSocketProtocol(WebSocketProtocol):
    """Sanic's websocket protocol with a :class:`FrameReader` on every websocket."""

    __slots__ = ("hetu_reader",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hetu_reader: FrameReader | None = None

    async def websocket_handshake(self, request, subprotocols=None):
        ws = await super().websocket_handshake(request, subprotocols)
        # no await since Sanic set self.websocket: no byte has reached it yet
        self.hetu_reader = FrameReader(ws, self.transport)
        return ws

    def data_received(self, data: bytes) -> None:
        reader = self.hetu_reader
        if reader is not None:
            reader.feed(data)
        else:
            super().data_received(data)
