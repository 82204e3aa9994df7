"""One client connection: handshake, then an ordered receive loop and one send queue.

States: ``HANDSHAKING`` → ``OPEN`` → ``CLOSING`` → ``CLOSED``. Messages of a client are
handled strictly one at a time, in order; every ``rpc`` and ``sub`` gets exactly one
reply frame (``unsub`` none); replies and subscription pushes share one FIFO queue.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import enum
import logging
from typing import Any

from sanic.exceptions import WebsocketClosed

import hetu

from ..common.tasks import cancel_and_wait
from ..endpoint.executor import EndpointExecutor
from ..endpoint.response import RejectResponse, ResponseToClient
from ..system.caller import SystemCaller
from ..system.context import SystemContext
from ..system.definer import SystemClusters
from .limits import FloodChecker
from .login import KICKED, TAKEN_OVER, ConnectionLogin
from .protocol import REJECTED, ProtocolViolation
from .state import ServerState
from .subscription import ConnectionSubscriptions
from .ws_reader import FrameReader
from .ws_writer import DirectWriter

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

HELLO_TIMEOUT = 10.0
UNREAD_FRAMES_ROUNDS = 100
QUEUE_SIZE = 1024
# a connection whose queue is full keeps at most this many more frames before it is
# closed as too slow to take its pushes
OVERFLOW_LIMIT = 4096


class ConnState(enum.Enum):
    """The life of a client connection: handshake, open, closing, closed."""
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _Close:
    """Queue marker: stop sending and drop the connection."""


CLOSE = _Close()
# the clean-up tasks of closing connections (a running task needs a strong reference)
_closing: set[asyncio.Task] = set()


class ClientConnection:
    """One game client's websocket: handshake, rpc/sub/unsub handling, its send queue and
    direct writes, and the clean-up when it ends (its login: :class:`.login.ConnectionLogin`)."""

    def __init__(self, server: ServerState, ws: Any, request: Any, instance: str) -> None:
        self.server = server
        self.ws = ws
        self.request = request
        self.instance = instance
        self.state = ConnState.HANDSHAKING
        self.pipeline = server.pipeline
        self.layer_ctxs: list | None = None
        self.ctx: SystemContext | None = None
        self.executor: EndpointExecutor | None = None
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.recv_flood = FloodChecker()
        self.send_flood = FloodChecker()
        self.subscriptions: ConnectionSubscriptions | None = None  # on the first sub
        self._overflow: collections.deque | None = None  # frames waiting for queue space
        self._overflow_task: asyncio.Task | None = None
        self._direct: DirectWriter | None = None  # set once the connection is open
        self._reader = FrameReader.of(ws)  # None when not served by HetuWebSocketProtocol
        self.login = ConnectionLogin(self)  # who it is logged in as; takeovers (login.py)

    @property
    def address(self) -> str:
        ip = getattr(self.request, "client_ip", None) or getattr(self.request, "ip", None)
        return str(ip or "unknown")

    def _fail(self) -> None:
        """Drop the TCP connection without a close frame (the reference's behaviour)."""
        self.state = ConnState.CLOSING
        try:
            self.ws.fail_connection()
        except Exception:  # already gone
            pass

    # -- handshake --------------------------------------------------------------------------

    async def _handshake(self) -> bool:
        try:
            raw = await (self._reader or self.ws).recv(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            raw = None
        if not isinstance(raw, (bytes, bytearray)) or not raw:
            return False
        try:
            hello = self.pipeline.decode(None, bytes(raw))
        except ValueError:
            return False
        if not isinstance(hello, list) or len(hello) != self.pipeline.num_handshake_layers:
            return False
        if self.instance not in self.server.table_managers:
            return False  # checked after the hello so scanners cannot list instances
        try:
            self.layer_ctxs, reply = self.pipeline.handshake(hello)
        except Exception as exc:
            logger.info("handshake from %s refused: %s", self.address, exc)
            await self.ws.send(self.pipeline.encode(None, []))
            return False
        await self.ws.send(reply)
        return True

    def _cancel_http_timeout_check(self) -> None:
        """Sanic checks HTTP timeouts with a timer it no longer re-arms once the request
        became a websocket; the pending one kept this connection's objects (~25 KiB)
        alive for up to 30 s after it closed, so a flood of short connections grew the
        worker by that much per connection. Cancelling it changes nothing else."""
        timer = getattr(getattr(self.ws, "io_proto", None), "_callback_check_timeouts", None)
        if timer is not None:
            timer.cancel()

    def _new_context(self) -> SystemContext:
        cfg = self.server
        ctx = SystemContext(
            caller=0, connection_id=0, address=self.address, group="guest", user_data={},
            timestamp=0.0, request=self.request, systems=None,
        )
        ctx.configure(
            copy.deepcopy(cfg.limit("CLIENT_SEND_LIMITS", [])),
            copy.deepcopy(cfg.limit("SERVER_SEND_LIMITS", [])),
            int(cfg.limit("MAX_ROW_SUBSCRIPTION", 1000)),
            int(cfg.limit("MAX_INDEX_SUBSCRIPTION", 50)),
        )
        ctx.idle_timeout, ctx.max_anonymous_by_ip = cfg.idle_timeout, cfg.max_anonymous_by_ip
        return ctx

    # -- lifecycle ------------------------------------------------------------------------------

    async def serve(self) -> None:
        self._cancel_http_timeout_check()
        if not await self._handshake():
            self._fail()
            await self._release_unread_frames()
            self.state = ConnState.CLOSED
            return
        tbl_mgr = self.server.table_managers[self.instance]
        self.ctx = ctx = self._new_context()
        ctx.systems = SystemCaller(self.server.namespace, tbl_mgr, ctx)
        # the login watch (login.py) notices takeovers: no Connection read per call
        self.executor = self.server.executor_class(self.server.namespace, tbl_mgr, ctx, login_watched=True)
        try:
            await self.executor.initialize(self.address)
        except Exception as exc:
            logger.warning("connection from %s refused: %s", self.address, exc)
            self.state = ConnState.CLOSED
            await self.ws.close()
            return
        self.state = ConnState.OPEN
        self._direct = DirectWriter.of(self.ws)
        replay.info("[Connected] %s", ctx)
        receiver = asyncio.create_task(self._receive_loop(), name=f"hetu-recv-{ctx.connection_id}")
        try:
            await self._send_loop()
        finally:
            self.state = ConnState.CLOSING
            closing = asyncio.ensure_future(self._close(receiver))
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
            await asyncio.shield(closing)

    async def _close(self, receiver: asyncio.Task) -> None:
        """Stop receiving and clean up, in a task of its own: Sanic cancels the handler
        when the socket closes (also when this server dropped it), which used to cut
        the clean-up short: ``on_disconnect`` did not run, the ``Connection`` row stayed,
        and the broker and login watcher kept the connection (and its memory) forever."""
        await cancel_and_wait(receiver)
        await self._release_unread_frames()
        await self._cleanup()
        self.state = ConnState.CLOSED
        replay.info("[Closed] %s", self.ctx)

    async def _release_unread_frames(self) -> None:
        """Frames that came after the one that ended the connection wait in Sanic's frame
        assembler for a read that never comes, each in a task nothing else references;
        once the connection is garbage, asyncio logs every such task as "destroyed but
        it is pending" (an ERROR per dropped client that had pipelined frames). Reading
        them out lets those tasks end."""
        if self._reader is not None:  # frames went to our reader, never to the assembler
            return
        assembler = getattr(self.ws, "assembler", None)
        events_lock = getattr(self.ws, "process_event_mutex", None)
        if assembler is None or events_lock is None:
            return
        idle = 0
        for _ in range(UNREAD_FRAMES_ROUNDS):
            await asyncio.sleep(0)  # a frame being put goes on
            busy = await assembler.get(0) is not None or assembler.write_mutex.locked() or events_lock.locked()
            idle = 0 if busy else idle + 1
            if idle == 3:  # a task just created by data_received has had its turn too
                return

    async def _cleanup(self) -> None:
        if self._overflow_task is not None:
            await cancel_and_wait(self._overflow_task)
        await self.login.close()
        if self.subscriptions is not None:
            try:
                await self.subscriptions.close()
            except Exception:
                logger.exception("closing the subscriptions of %s failed", self.ctx)
        if SystemClusters().get_system("on_disconnect") is not None:
            try:
                await self.ctx.systems.call("on_disconnect")
            except Exception:
                logger.exception("on_disconnect of %s failed", self.ctx)
        try:
            await self.executor.terminate()
        except Exception:
            logger.exception("removing the Connection row of %s failed", self.ctx)

    # -- sending -----------------------------------------------------------------------------------

    async def push(self, frame: Any, name: str | None = None) -> None:
        """Send a frame to this client (``name``: the rpc it answers, for errors): at
        once when nothing queued is waiting before it and the socket takes it (see
        :mod:`.ws_writer`), else through the send queue."""
        if self._write_now(frame, name):
            return
        if self._overflow is not None:  # behind the pushes already waiting
            self.push_nowait(frame, name)
            return
        await self.queue.put((frame, name))

    def push_nowait(self, frame: Any, name: str | None = None) -> None:
        """Send or queue a frame without waiting (subscription pushes: the fan-out
        serves every connection of the worker and must not wait for one). Frames that
        do not fit wait in order behind the queue; a client that falls
        ``OVERFLOW_LIMIT`` frames further behind is closed as too slow."""
        if self._write_now(frame, name):
            return
        if self._overflow is None:
            try:
                self.queue.put_nowait((frame, name))
                return
            except asyncio.QueueFull:
                self._overflow = collections.deque()
                self._overflow_task = asyncio.create_task(self._move_overflow())
        if len(self._overflow) >= OVERFLOW_LIMIT:
            logger.warning("%s does not take its pushes (%d frames waiting); closing",
                           self.ctx, QUEUE_SIZE + len(self._overflow))
            self.close_now()
            return
        self._overflow.append((frame, name))

    def _write_now(self, frame: Any, name: str | None) -> bool:
        """Write ``frame`` without the send loop when nothing is queued before it and the
        socket takes it now; False when it must be queued."""
        direct = self._direct
        if (direct is None or self.state is not ConnState.OPEN or self._overflow is not None
                or not self.queue.empty() or isinstance(frame, str) or frame is CLOSE or not direct.ready()):
            return False
        data = self._encode(frame, name)
        if data is None:
            self.close_now()
            return True
        direct.send(data)
        if self.send_flood.hit(self.ctx.server_limits):
            logger.warning("%s exceeded the server send limits; closing", self.ctx)
            self.close_now()
        return True

    def _encode(self, frame: Any, name: str | None) -> bytes | None:
        """The frame through the pipeline; None when it cannot be encoded and the
        connection is to be dropped (a debug server answers the rpc with the error)."""
        try:
            return self.pipeline.encode(self.layer_ctxs, frame)
        except (TypeError, ValueError, OverflowError) as exc:
            logger.error("cannot encode the reply to %s for %s: %s", name, self.ctx, exc)
            if self.server.debug and name is not None:
                return self.pipeline.encode(self.layer_ctxs, ["err", name, f"{type(exc).__name__}: {exc}"])
            return None

    async def _move_overflow(self) -> None:
        overflow = self._overflow
        while overflow:
            await self.queue.put(overflow[0])
            if overflow is not self._overflow:  # closed meanwhile
                return
            overflow.popleft()
        self._overflow = None

    async def _send_loop(self) -> None:
        while True:
            frame, name = await self.queue.get()
            if frame is CLOSE:
                self._fail()
                return
            if isinstance(frame, str):  # the motd: plain text, outside the pipeline
                await self.ws.send(frame)
                continue
            data = self._encode(frame, name)
            if data is None:
                self._fail()
                return
            await self.ws.send(data)
            if self.send_flood.hit(self.ctx.server_limits):
                logger.warning("%s exceeded the server send limits; closing", self.ctx)
                self._fail()
                return

    # -- receiving -----------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        recv = self._reader.recv if self._reader is not None else self.ws.recv
        try:
            while True:
                data = await recv()
                if data is None:  # the socket closed
                    break
                await self._handle(data)
        except WebsocketClosed:  # the socket closed (found by a push written meanwhile)
            pass
        except ProtocolViolation as exc:
            logger.info("dropping %s: %s", self.ctx, exc)
            replay.info("[Illegal] %s %s", self.ctx, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the receive loop of %s failed", self.ctx)
        await self.queue.put((CLOSE, None))

    async def _handle(self, data: Any) -> None:
        if isinstance(data, str) or not data:
            raise ProtocolViolation("text or empty frame")
        try:
            message = self.pipeline.decode(self.layer_ctxs, bytes(data))
        except Exception as exc:
            raise ProtocolViolation(f"undecodable frame: {exc}") from None
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            raise ProtocolViolation("a message must be a non-empty array starting with a tag")
        if self.recv_flood.hit(self.ctx.client_limits):
            if self.server.metrics is not None:
                self.server.metrics.call_dropped(message)
            raise ProtocolViolation("client send limits exceeded")
        tag = message[0]
        if tag == "rpc":
            await self._rpc(message)
        elif tag == "motd":
            await self.push(f"👋 Welcome to HeTu Database! v{hetu.__version__}")
        elif tag == "sub":
            await self._sub(message)
        elif tag == "unsub":
            await self._unsub(message)
        else:
            raise ProtocolViolation(f"unknown message tag {tag!r:.40}")

    async def _rpc(self, message: list) -> None:
        if len(message) < 2 or not isinstance(message[1], str):
            if self.server.metrics is not None:
                self.server.metrics.call_dropped(message)
            raise ProtocolViolation("rpc needs an endpoint name")
        name, args = message[1], message[2:]
        login = self.login
        if login.state is KICKED:
            logger.warning("[Kicked] %s was logged in elsewhere; refusing %.40s", self.ctx, name)
            if self.server.metrics is not None:
                self.server.metrics.call_refused(name)
            ok, result = False, None
        else:
            caller = self.ctx.caller
            login.in_call = True
            try:
                ok, result = await self.executor.execute(name, *args)
            except Exception as exc:  # a guard raised something other than ClientReject
                logger.exception("a guard of %s failed for %s", name, self.ctx)
                ok, result = False, f"{type(exc).__name__}: {exc}"
            finally:
                login.in_call = False
            if login.state is TAKEN_OVER or self.ctx.caller != caller:  # rare: no coroutine per call otherwise
                await login.call_ended(caller)
        replay.info("[EndpointResult][%s](%s, %r)", name, ok, result)
        if not ok:
            if not self.server.debug:
                raise ProtocolViolation(f"rpc {name!r:.40} failed")
            await self.push(["err", name, result if isinstance(result, str) else REJECTED])
        elif isinstance(result, RejectResponse):
            await self.push(["rej", name, result.code])
        elif isinstance(result, ResponseToClient):
            await self.push(["rsp", result.message], name)
        else:
            await self.push(["rsp", "ok"])

    def close_now(self) -> None:
        """Drop what is queued (the client is not told anything more) and close."""
        self._overflow = None
        if self._overflow_task is not None:
            self._overflow_task.cancel()
        while True:
            try:
                self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
        self.queue.put_nowait((CLOSE, None))

    async def _sub(self, message: list) -> None:
        if self.subscriptions is None:
            self.subscriptions = ConnectionSubscriptions(self)
        await self.subscriptions.handle_sub(message)

    async def _unsub(self, message: list) -> None:
        if len(message) != 2 or not isinstance(message[1], str):
            raise ProtocolViolation("unsub needs one subscription id")
        if self.subscriptions is not None:
            await self.subscriptions.unsubscribe(message[1])
