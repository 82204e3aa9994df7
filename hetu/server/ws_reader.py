"""Receiving websocket messages without a task per message.

Sanic's ``recv()`` creates a task for every message (its frame assembler's ``get()``)
and races it with a cancel future in ``asyncio.wait``, so that a close frame or the end
of the stream can interrupt it; per call that is a task, a wait, a future and their
callbacks. A connection's receive loop is the only reader of its socket, so it can
await the assembler itself and be interrupted differently: Sanic cancels the future in
``recv_cancel`` when the peer closes; here that future stays set for the life of the
reader, and cancelling it cancels the reading task while (and only while) it waits for
a message, which :meth:`DirectReader.recv` turns into "closed" (None).

This reaches into Sanic's websocket (``assembler``: its frame assembler;
``recv_cancel``: the future it cancels on close; ``recv_lock``: held by a ``recv()``
under way; ``ws_proto``: the websockets protocol object). :meth:`DirectReader.of`
returns None when they are not there, and ``ws.recv()`` is used instead;
tests/server/test_ws_writer.py names them, so a Sanic upgrade that moves them fails
there instead of silently switching this path off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.protocol import State


class DirectReader:
    """Reads whole messages from one Sanic websocket; one reading task at a time."""

    __slots__ = ("_ws", "_assembler", "_cancel", "_waiting", "_closed")

    def __init__(self, ws: Any, assembler: Any) -> None:
        self._ws, self._assembler = ws, assembler
        self._cancel: asyncio.Future | None = None
        self._waiting: asyncio.Task | None = None  # the task waiting for a message now
        self._closed = False

    @classmethod
    def of(cls, ws: Any) -> DirectReader | None:
        """The reader of a Sanic websocket, or None when it lacks the parts needed."""
        assembler = getattr(ws, "assembler", None)
        if (not callable(getattr(assembler, "get", None)) or not hasattr(ws, "recv_cancel")
                or not isinstance(getattr(ws, "recv_lock", None), asyncio.Lock)
                or getattr(ws, "ws_proto", None) is None):
            return None
        return cls(ws, assembler)

    def _on_close(self, _: asyncio.Future) -> None:
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def recv(self) -> bytes | str | None:
        """The next message; None once the connection is closing or closed."""
        ws = self._ws
        if self._closed or ws.ws_proto.state is not State.OPEN:
            return None
        if ws.recv_lock.locked():  # another reader is under way: Sanic's own path
            return await ws.recv()
        if self._cancel is None or ws.recv_cancel is not self._cancel:
            self._cancel = asyncio.get_running_loop().create_future()
            self._cancel.add_done_callback(self._on_close)
            ws.recv_cancel = self._cancel
        task = self._waiting = asyncio.current_task()
        try:
            return await self._assembler.get()
        except asyncio.CancelledError:
            # our own cancel (the peer closed) ends the reading; any other goes on
            if self._closed and task is not None and task.uncancel() == 0:
                return None
            raise
        finally:
            self._waiting = None
