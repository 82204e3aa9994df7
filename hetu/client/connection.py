"""The client connection: one websocket speaking the HeTu protocol.

Replies are matched to requests in order (the protocol has no request ids); ``updt``
pushes go to the live subscription they belong to, or, for subscriptions made with the
low-level :meth:`HeTuClient.subscribe_get` / :meth:`HeTuClient.subscribe_range`, to a
queue read by :meth:`HeTuClient.next_update`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import websockets

from ..server.pipeline import CryptoLayer, HandshakeError, JSONBinaryLayer, MessagePipeline, ZlibLayer
from .errors import CallFailed, CallRejected, ConnectionClosed, HandshakeRefused
from .live import LiveRange, LiveRow, LiveSubscription


def default_pipeline(auth_key: str | None) -> MessagePipeline:
    """jsonb + zlib + crypto: the layers of HeTu's default configuration."""
    return MessagePipeline([JSONBinaryLayer(), ZlibLayer(level=1), CryptoLayer(auth_key)])


def component_name(component: str | type) -> tuple[str, type | None]:
    """A component given by name, or by its class (whose rows then get its dtypes)."""
    if isinstance(component, str):
        return component, None
    name = getattr(component, "name_", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a component name or a hetu component class, got {component!r}")
    return name, component


class HeTuClient:
    """One connection. Use :meth:`connect`; see :class:`hetu.client.HeTuSession` for a
    connection that comes back by itself."""

    def __init__(self, ws, pipeline: MessagePipeline, ctxs: list) -> None:
        self.ws = ws
        self.pipeline = pipeline
        self.ctxs = ctxs
        # pending requests in sending order: (future, reply transform run by the reader,
        # whether it is a `sub`)
        self._waiting: collections.deque[tuple[asyncio.Future, Callable | None, bool]] = collections.deque()
        self._live: dict[str, LiveSubscription] = {}
        self._ended: set[str] = set()  # ids of live subscriptions ended by unsubscribe()
        self.updates: asyncio.Queue = asyncio.Queue()
        self.unsolicited: list = []  # frames that answered no pending request
        self._send_lock = asyncio.Lock()
        self.closed = False
        self.end_live_on_close = True  # a session keeps them across reconnects
        self._reader = asyncio.create_task(self._read(), name="hetu-client-reader")

    @classmethod
    async def connect(
        cls, url: str, auth_key: str | None = None, pipeline: MessagePipeline | None = None,
        timeout: float = 10, ssl: Any = None,
    ) -> HeTuClient:
        """Open ``ws://host:port/hetu/<instance>`` (or ``wss://``, with an optional
        ``ssl.SSLContext``) and do the handshake."""
        pipeline = pipeline or default_pipeline(auth_key)
        try:
            ws = await websockets.connect(url, max_size=None, open_timeout=timeout, ssl=ssl)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise ConnectionClosed(f"cannot connect to {url}: {exc}") from exc
        pending, hello = pipeline.client_hello()
        try:
            await ws.send(hello)
            reply = await asyncio.wait_for(ws.recv(), timeout)
        except (websockets.ConnectionClosed, TimeoutError) as exc:
            await ws.close()
            raise ConnectionClosed(f"the server closed the connection during the handshake: {exc}") from None
        try:
            ctxs = pipeline.client_handshake(pending, reply)
        except (HandshakeError, ValueError) as exc:
            await ws.close()
            raise HandshakeRefused(f"{url} refused the handshake ({exc}): check the auth key") from None
        return cls(ws, pipeline, ctxs)

    async def wait_closed(self) -> None:
        """Return when the connection has ended."""
        await asyncio.gather(self._reader, return_exceptions=True)

    # -- plumbing -------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = ["motd", raw] if isinstance(raw, str) else self.pipeline.decode(self.ctxs, raw)
                if frame and frame[0] == "updt":
                    self._route_update(frame)
                elif self._is_extra_sub_failure(frame):
                    # a debug server follows the reply to a subscription over the caps with
                    # this frame: it answers no request (a pending `sub` would take it)
                    self.unsolicited.append(frame)
                elif self._waiting:
                    future, transform, _ = self._waiting.popleft()
                    if future.done():
                        continue
                    try:  # run here, so the pushes right behind a `sub` reply find their object
                        future.set_result(transform(frame) if transform else frame)
                    except Exception as exc:
                        future.set_exception(exc)
                else:  # e.g. the extra BAD_SUBS frame of a debug server
                    self.unsolicited.append(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            while self._waiting:
                future, _, _ = self._waiting.popleft()
                if not future.done():
                    future.set_exception(ConnectionClosed("the server closed the connection"))
            self.updates.put_nowait(None)
            if self.end_live_on_close:
                for live in self._live.values():
                    live._end()

    def _is_extra_sub_failure(self, frame: list) -> bool:
        if not (len(frame) == 3 and frame[0] == "sub" and frame[1] == "fail"):
            return False
        return not self._waiting or not self._waiting[0][2]

    def _route_update(self, frame: list) -> None:
        sub_id, delta = frame[1], frame[2]
        live = self._live.get(sub_id)
        if live is None:
            if sub_id not in self._ended:  # late pushes of an ended live object: dropped
                self.updates.put_nowait((sub_id, delta))
        elif isinstance(delta, dict):
            live._apply(delta)

    async def send(self, frame: list, expect_reply: bool = True, transform: Callable | None = None) -> Any:
        """Send one frame; returns the reply frame (through ``transform``) when one is expected."""
        if self.closed:
            raise ConnectionClosed("the connection is closed")
        future = asyncio.get_running_loop().create_future() if expect_reply else None
        async with self._send_lock:  # encoding order must equal sending order
            data = self.pipeline.encode(self.ctxs, frame)
            if future is not None:
                self._waiting.append((future, transform, bool(frame) and frame[0] == "sub"))
            try:
                await self.ws.send(data)
            except websockets.ConnectionClosed:
                self.closed = True  # the reader may not have noticed yet
                if future is not None:
                    future.cancel()  # nobody will wait for its reply
                raise ConnectionClosed("the connection is closed") from None
        return await future if future is not None else None

    # -- calls -------------------------------------------------------------------------------

    async def call(self, name: str, *args: Any) -> Any:
        """Call an endpoint/system; returns its response (``"ok"`` by default).

        Raises :class:`CallRejected` (``rej``), :class:`CallFailed` (``err``, debug-mode
        servers) or :class:`ConnectionClosed` (release-mode servers drop the connection
        of a failed call)."""
        reply = await self.send(["rpc", name, *args])
        tag = reply[0]
        if tag == "rsp":
            return reply[1]
        if tag == "rej":
            raise CallRejected(reply[1], reply[2])
        if tag == "err":
            raise CallFailed(reply[1], reply[2])
        raise ConnectionClosed(f"unexpected reply {reply!r:.100}")

    async def motd(self) -> str:
        reply = await self.send(["motd"])
        return reply[1]

    # -- live subscriptions -----------------------------------------------------------------

    async def get(self, component: str | type, index: str, value: Any) -> LiveRow | None:
        """Subscribe to the row whose ``index`` equals ``value``; ``None`` when there is
        no such row (or it may not be read)."""
        name, cls = component_name(component)
        request = ["sub", name, "get", index, value]
        return await self._subscribe_live(
            request, lambda data: LiveRow(self, request, name, cls, data))

    async def range(
        self, component: str | type, index: str, left: Any, right: Any = None, limit: int = 10,
        desc: bool = False, force: bool = True,
    ) -> LiveRange:
        """Subscribe to up to ``limit`` rows with ``left <= index <= right`` (``right``
        defaults to ``left``), ordered by ``index`` (``desc`` reverses). With ``force``
        false the server may answer ``None`` when the range is empty."""
        name, cls = component_name(component)
        request = ["sub", name, "range", index, left, right, limit, desc, force]
        return await self._subscribe_live(
            request, lambda data: LiveRange(self, request, name, cls, index, desc, data or []))

    async def _subscribe_live(self, request: list, make: Callable[[Any], LiveSubscription] | None = None,
                              live: LiveSubscription | None = None) -> Any:
        """Send ``request``; the reader makes (or, with ``live``, refreshes) the object."""

        def on_reply(frame: list) -> LiveSubscription | None:
            sub_id, data = frame[1], frame[2]
            if sub_id == "fail":
                raise CallFailed(request[1], str(data))
            if sub_id is None:  # no such row, or an empty range without force
                if live is not None:
                    live.sub_id = None
                    live._replace(None)
                return None
            if sub_id in self._live:  # the same query again: the server keeps one
                return self._live[sub_id]
            self._ended.discard(sub_id)
            target = live
            if target is None:
                assert make is not None
                target = make(data)
            else:
                target._replace(data)
            target.sub_id = sub_id
            self._live[sub_id] = target
            return target

        return await self.send(request, transform=on_reply)

    async def _unsubscribe(self, live: LiveSubscription) -> None:
        if live.sub_id is not None and self._live.get(live.sub_id) is live:
            del self._live[live.sub_id]
            self._ended.add(live.sub_id)
            if not self.closed:
                await self.unsubscribe(live.sub_id)
        live._end()

    # -- low level subscriptions -------------------------------------------------------------

    async def subscribe_get(self, component: str, index: str, value: Any) -> tuple[str | None, dict | None]:
        """``sub get`` without a live object: ``(sub_id, row)``; pushes go to :meth:`next_update`."""
        reply = await self.send(["sub", component, "get", index, value])
        return reply[1], reply[2]

    async def subscribe_range(
        self, component: str, index: str, left: Any, right: Any = None, limit: int = 10,
        desc: bool = False, force: bool = True,
    ) -> tuple[str | None, list]:
        """``sub range`` without a live object: ``(sub_id, rows)``."""
        reply = await self.send(["sub", component, "range", index, left, right, limit, desc, force])
        return reply[1], reply[2]

    async def unsubscribe(self, sub_id: str) -> None:
        await self.send(["unsub", sub_id], expect_reply=False)

    async def next_update(self, timeout: float | None = None) -> tuple[str, dict] | None:
        """The next ``updt`` push of a low-level subscription as ``(sub_id, {row_id: row
        or None})``; None when closed or after ``timeout`` seconds."""
        if self.updates.empty():
            try:  # asyncio.timeout, not wait_for: no task per call on a subscriber's hot path
                async with asyncio.timeout(timeout):
                    item = await self.updates.get()
            except TimeoutError:
                return None
        else:
            item = self.updates.get_nowait()
        if item is None:
            self.updates.put_nowait(None)  # keep telling later callers
        return item

    async def close(self, end_live: bool = True) -> None:
        """Close the connection; live subscriptions end (unless ``end_live`` is false:
        a session keeps them for its next connection)."""
        self.end_live_on_close = end_live
        await self.ws.close()
        await self.wait_closed()
