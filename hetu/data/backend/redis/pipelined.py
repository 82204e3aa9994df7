"""A small Redis client for the call path: one connection, commands auto-pipelined.

Every command issued during one turn of the event loop leaves in a single write, and
replies are parsed by hiredis straight from the socket's data callbacks, so a worker
serving many concurrent calls pays one system call for many commands and no connection
pool, lock or timer per command. The backend client sends its rows, ranges, unique
checks and commits through it; schema maintenance and change events keep using
redis-py, and so does Redis Cluster mode::

    redis = PipelinedRedis("redis://127.0.0.1:6379/0")
    value = await redis.execute("HGET", "key", "field")
    await redis.close()

The connection is opened on first use and again after it was lost. A command that was
written but not answered when the connection dropped fails with
``redis.exceptions.ConnectionError``; reads may ask to be re-sent once on a new
connection (``retry=True``), writes never are (whether they were applied is unknown).
Errors are redis-py's exception classes, so callers catch one family of errors.

Options (from the URL's query or keyword arguments, as redis-py names them):
``socket_connect_timeout`` (seconds to connect, default 10), ``socket_timeout``
(seconds an answer may take before the connection is dropped; default none: dead peers
are found by TCP keepalive), ``socket_keepalive`` (default on), ``username``,
``password``, ``db``, ``client_name``; ``rediss://`` connects with TLS and ``unix://``
over a Unix socket. Options meant for redis-py's pool are ignored here.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT = 10.0
_NOSCRIPT = "NOSCRIPT"


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


class _ReplyError(ResponseError):
    """What hiredis builds for an error reply; turned into redis-py's classes."""


def _as_error(reply: _ReplyError) -> ResponseError:
    text = str(reply)
    if text.startswith(_NOSCRIPT):
        return NoScriptError(text)
    return ResponseError(text)


class _RedisProtocol(asyncio.Protocol):
    """One connection: queues packed commands, writes them once per loop turn, and
    answers the waiting futures in order as replies arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.last_reply = time.monotonic()
        self._reader = hiredis.Reader(replyError=_ReplyError)
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._unsent: list[bytes] = []
        self._flush_scheduled = False

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            reply = reader.gets()
        except hiredis.ProtocolError as exc:
            self._drop(RedisConnectionError(f"protocol error from Redis: {exc}"))
            return
        while reply is not False:
            future = waiting.popleft()
            if not future.done():  # its caller may have been cancelled meanwhile
                if isinstance(reply, _ReplyError):
                    future.set_exception(_as_error(reply))
                else:
                    future.set_result(reply)
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._drop(RedisConnectionError(f"protocol error from Redis: {exc}"))
                return
        self.last_reply = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail_waiting(RedisConnectionError(f"connection to Redis lost{reason}"))

    # -- commands --------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def send(self, packed: bytes) -> asyncio.Future:
        """Queue one packed command; the future gets its reply."""
        future = self.loop.create_future()
        self._waiting.append(future)
        self._unsent.append(packed)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.lost is not None or not self._unsent:
            return
        data = b"".join(self._unsent) if len(self._unsent) > 1 else self._unsent[0]
        self._unsent.clear()
        self.transport.write(data)

    def _fail_waiting(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self._unsent.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def _drop(self, error: Exception) -> None:
        """Give up this connection (a protocol error or a timeout)."""
        self._fail_waiting(error)
        if self.transport is not None:
            self.transport.abort()


class PipelinedRedis:
    """A Redis server reached over one auto-pipelined connection (see the module doc)."""

    def __init__(self, url: str, **options: Any) -> None:
        settings: dict[str, Any] = dict(parse_url(url))
        settings.update(options)
        self.url = url
        connection_class = settings.get("connection_class")
        self._unix_path: str | None = settings.get("path") if connection_class is UnixDomainSocketConnection else None
        self._ssl = connection_class is SSLConnection
        self._host = settings.get("host", "localhost")
        self._port = int(settings.get("port", 6379))
        self._db = int(settings.get("db") or 0)
        self._username = settings.get("username")
        self._password = settings.get("password")
        self._client_name = settings.get("client_name")
        self._connect_timeout = _float_or_none(settings.get("socket_connect_timeout")) or CONNECT_TIMEOUT
        self._reply_timeout = _float_or_none(settings.get("socket_timeout"))
        keepalive = settings.get("socket_keepalive", True)
        self._keepalive = keepalive if isinstance(keepalive, bool) else str(keepalive).lower() in ("1", "true", "yes", "on")
        self._protocol: _RedisProtocol | None = None
        self._connecting: asyncio.Task | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    # -- connection -------------------------------------------------------------------

    async def _open_connection(self) -> _RedisProtocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._unix_path is not None:
                    _, protocol = await loop.create_unix_connection(lambda: _RedisProtocol(loop), self._unix_path)
                else:
                    context = ssl.create_default_context() if self._ssl else None
                    _, protocol = await loop.create_connection(
                        lambda: _RedisProtocol(loop), self._host, self._port, ssl=context)
                sock = protocol.transport.get_extra_info("socket")
                if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if self._keepalive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                await self._prepare(protocol)
        except TimeoutError:
            raise RedisTimeoutError(f"connecting to Redis at {self._where()} timed out") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {self._where()}: {exc}") from exc
        return protocol

    async def _prepare(self, protocol: _RedisProtocol) -> None:
        """AUTH, SELECT and CLIENT SETNAME on a new connection, in one write."""
        setup = []
        if self._password is not None:
            auth = ("AUTH", self._username, self._password) if self._username else ("AUTH", self._password)
            setup.append(auth)
        if self._db:
            setup.append(("SELECT", self._db))
        if self._client_name:
            setup.append(("CLIENT", "SETNAME", self._client_name))
        futures = [protocol.send(hiredis.pack_command(command)) for command in setup]
        try:
            for future in futures:
                await future
        except BaseException:
            protocol._drop(RedisConnectionError("setting up the Redis connection failed"))
            raise

    def _where(self) -> str:
        return self._unix_path or f"{self._host}:{self._port}"

    async def _connect(self) -> _RedisProtocol:
        if self._closed:
            raise RedisConnectionError(f"the Redis client of {self._where()} is closed")
        if self._connecting is None:  # one connection attempt shared by every caller
            self._connecting = asyncio.ensure_future(self._open_connection())
        try:
            protocol = await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None
        if self._closed:
            protocol._drop(RedisConnectionError("the Redis client was closed"))
            raise RedisConnectionError(f"the Redis client of {self._where()} is closed")
        if self._protocol is not protocol:
            self._protocol = protocol
            self._arm_watchdog()
        return protocol

    def _arm_watchdog(self) -> None:
        """With ``socket_timeout``: drop the connection when a command waits longer."""
        if self._reply_timeout is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._reply_timeout / 4, self._check_replies)

    def _check_replies(self) -> None:
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or self._closed:
            return
        if protocol.waiting and time.monotonic() - protocol.last_reply > self._reply_timeout:
            protocol._drop(RedisTimeoutError(f"Redis at {self._where()} did not answer within "
                                             f"{self._reply_timeout} s"))
            return
        if not protocol.waiting:
            protocol.last_reply = time.monotonic()  # the clock starts with the next command
        self._arm_watchdog()

    def _ready_protocol(self) -> _RedisProtocol | None:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            return None
        if protocol.loop is not asyncio.get_running_loop():
            # used from another event loop now (a test's, a new asyncio.run): the old
            # connection belongs to the old loop, so start afresh on this one
            self._protocol = self._connecting = self._watchdog = None
            return None
        return protocol

    # -- commands ----------------------------------------------------------------------

    async def execute(self, *args: Any, retry: bool = False) -> Any:
        """Send one command and return its reply (``bytes``, ``int``, lists...).

        ``retry``: re-send once on a new connection when the connection was lost before
        the reply came (only for commands that may safely run twice).
        """
        packed = hiredis.pack_command(args)
        protocol = self._ready_protocol() or await self._connect()
        try:
            return await protocol.send(packed)
        except RedisConnectionError:
            if not retry or self._closed:
                raise
        protocol = self._ready_protocol() or await self._connect()
        return await protocol.send(packed)

    async def execute_many(self, commands: list[tuple], retry: bool = False) -> list[Any]:
        """Several commands in one write; their replies in order (the first error raised)."""
        if not commands:
            return []
        packed = [hiredis.pack_command(command) for command in commands]
        for attempt in (1, 2):
            protocol = self._ready_protocol() or await self._connect()
            futures = [protocol.send(p) for p in packed]
            replies = await asyncio.gather(*futures, return_exceptions=True)
            lost = next((r for r in replies if isinstance(r, RedisConnectionError)), None)
            if lost is not None and retry and attempt == 1 and not self._closed:
                continue
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            return replies
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection; commands afterwards fail."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            try:
                late = await connecting
            except (Exception, asyncio.CancelledError):  # it is being discarded either way
                late = None
            if late is not None and late is not self._protocol:
                late._drop(RedisConnectionError("the Redis client was closed"))
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None and not protocol.loop.is_closed():
            protocol._fail_waiting(RedisConnectionError("the Redis client was closed"))
            protocol.transport.close()
