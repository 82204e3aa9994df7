"""An asyncio client for servers speaking the HeTu protocol (this one, or HeTu itself).

::

    from hetu.client import HeTuClient

    client = await HeTuClient.connect("ws://127.0.0.1:2466/hetu/dev", auth_key="password123")
    await client.call("user_login", 1001, "Alice")
    sub_id, rows = await client.subscribe_range("ChatMessage", "id", 0, 2**63 - 1, 1024)
    sub_id, delta = await client.next_update()
    await client.close()

Replies are matched to requests in order (the protocol has no request ids); ``updt``
pushes are queued for :meth:`next_update`.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import websockets

from ..server.pipeline import CryptoLayer, JSONBinaryLayer, MessagePipeline, ZlibLayer

__all__ = ["CallFailed", "CallRejected", "ConnectionClosed", "HeTuClient"]


class ConnectionClosed(Exception):
    """The connection ended (the server drops it on illegal or failed requests)."""


class CallRejected(Exception):
    """A guard rejected the call (``["rej", name, code]``)."""

    def __init__(self, name: str, code: str) -> None:
        super().__init__(f"{name} rejected: {code}")
        self.name = name
        self.code = code


class CallFailed(Exception):
    """The call failed (``["err", name, reason]``, sent by debug-mode servers)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} failed: {reason}")
        self.name = name
        self.reason = reason


def default_pipeline(auth_key: str | None) -> MessagePipeline:
    return MessagePipeline([JSONBinaryLayer(), ZlibLayer(level=1), CryptoLayer(auth_key)])


class HeTuClient:
    def __init__(self, ws, pipeline: MessagePipeline, ctxs: list) -> None:
        self.ws = ws
        self.pipeline = pipeline
        self.ctxs = ctxs
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self.updates: asyncio.Queue = asyncio.Queue()
        self.unsolicited: list = []  # frames that answered no pending request
        self._send_lock = asyncio.Lock()
        self.closed = False
        self._reader = asyncio.create_task(self._read(), name="hetu-client-reader")

    @classmethod
    async def connect(
        cls, url: str, auth_key: str | None = None, pipeline: MessagePipeline | None = None, timeout: float = 10
    ) -> HeTuClient:
        pipeline = pipeline or default_pipeline(auth_key)
        ws = await websockets.connect(url, max_size=None, open_timeout=timeout)
        pending, hello = pipeline.client_hello()
        await ws.send(hello)
        try:
            reply = await asyncio.wait_for(ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            raise ConnectionClosed(f"the server closed the connection during the handshake: {exc}") from None
        ctxs = pipeline.client_handshake(pending, reply)
        return cls(ws, pipeline, ctxs)

    # -- plumbing -------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if isinstance(raw, str):
                    frame = ["motd", raw]
                else:
                    frame = self.pipeline.decode(self.ctxs, raw)
                if frame and frame[0] == "updt":
                    self.updates.put_nowait((frame[1], frame[2]))
                elif self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(frame)
                else:  # e.g. the extra BAD_SUBS frame of a debug server
                    self.unsolicited.append(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(ConnectionClosed("the server closed the connection"))
            self.updates.put_nowait(None)

    async def send(self, frame: list, expect_reply: bool = True) -> Any:
        """Send one frame; returns the reply frame when one is expected."""
        if self.closed:
            raise ConnectionClosed("the connection is closed")
        future = asyncio.get_running_loop().create_future() if expect_reply else None
        async with self._send_lock:  # encoding order must equal sending order
            data = self.pipeline.encode(self.ctxs, frame)
            if future is not None:
                self._waiting.append(future)
            try:
                await self.ws.send(data)
            except websockets.ConnectionClosed:
                raise ConnectionClosed("the connection is closed") from None
        return await future if future is not None else None

    # -- API ---------------------------------------------------------------------------------

    async def call(self, name: str, *args: Any) -> Any:
        """Call an endpoint/system; returns its response (``"ok"`` by default)."""
        reply = await self.send(["rpc", name, *args])
        tag = reply[0]
        if tag == "rsp":
            return reply[1]
        if tag == "rej":
            raise CallRejected(reply[1], reply[2])
        if tag == "err":
            raise CallFailed(reply[1], reply[2])
        raise ConnectionClosed(f"unexpected reply {reply!r:.100}")

    async def subscribe_get(self, component: str, index: str, value: Any) -> tuple[str | None, dict | None]:
        reply = await self.send(["sub", component, "get", index, value])
        return reply[1], reply[2]

    async def subscribe_range(
        self, component: str, index: str, left: Any, right: Any = None, limit: int = 10,
        desc: bool = False, force: bool = True,
    ) -> tuple[str | None, list]:
        reply = await self.send(["sub", component, "range", index, left, right, limit, desc, force])
        return reply[1], reply[2]

    async def unsubscribe(self, sub_id: str) -> None:
        await self.send(["unsub", sub_id], expect_reply=False)

    async def next_update(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The next ``updt`` push as ``(sub_id, {row_id: row or None})``; None when closed
        or after ``timeout`` seconds."""
        try:
            item = await asyncio.wait_for(self.updates.get(), timeout)
        except TimeoutError:
            return None
        if item is None:
            self.updates.put_nowait(None)  # keep telling later callers
        return item

    async def motd(self) -> str:
        reply = await self.send(["motd"])
        return reply[1]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
