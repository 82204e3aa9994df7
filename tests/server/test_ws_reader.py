"""The frame reader (hetu/server/ws_reader.py) on a real Sanic server and real sockets:
messages whole or fragmented, split anywhere across reads, pings and closes still
handled by Sanic, protocol errors closed with the codes websockets uses, and reading
paused for a client that sends faster than its messages are taken.

Frames are written by hand over a plain TCP socket where the client library would not
send them (fragments, bad frames, arbitrary splits)."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct

import pytest
import websockets

from hetu.server.ws_reader import PAUSE_AT, FrameReader, HetuWebSocketProtocol
from tests.server.test_ws_writer import _serve
from tests.waiting import wait_until


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """One client frame (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A websocket client on a bare socket: sends bytes as given, reads server frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        host, _, rest = url.removeprefix("ws://").partition(":")
        port, _, path = rest.partition("/")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert response.startswith(b"HTTP/1.1 101"), response
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next_frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the server's next frame; None at the end of the stream."""
        try:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 5)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            return None

    async def close_code(self) -> int | None:
        """The code of the server's close frame (skipping other frames); None when the
        stream ended without one."""
        while (got := await self.next_frame()) is not None:
            opcode, payload = got
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        return None

    def close(self) -> None:
        self.writer.close()


async def _echo_server(**config):
    """A server whose handler answers every message with ``repr`` of it, through the
    reader; it records what it got and whether the reader was there."""
    got: list = []

    async def handler(request, ws):
        reader = FrameReader.of(ws)
        got.append(("reader", reader is not None))
        while (message := await reader.recv()) is not None:
            got.append(message)
            await ws.send(repr(message).encode())
        got.append("closed")

    server, url = await _serve(handler, protocol=HetuWebSocketProtocol, **config)
    return server, url, got


async def _stop(server) -> None:
    server.close()
    await server.wait_closed()


async def test_messages_of_a_real_client_arrive_whole_and_in_order():
    server, url, got = await _echo_server()
    messages = [b"one", b"x" * 300, b"y" * 70_000, "text", b""]
    try:
        async with websockets.connect(url, max_size=None) as client:
            for message in messages:
                await client.send(message)
                assert await asyncio.wait_for(client.recv(), 5) == repr(message).encode()
        await wait_until(lambda: "closed" in got, 5, "the close to end the reading")
        assert got == [("reader", True), *messages, "closed"]
    finally:
        await _stop(server)


async def test_a_plain_sanic_websocket_has_no_reader():
    seen: list = []

    async def handler(request, ws):
        seen.append(FrameReader.of(ws))

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            await wait_until(lambda: seen, 5, "the handler")
            del client
        assert seen == [None]
    finally:
        await _stop(server)


async def test_frames_split_anywhere_and_fragments_with_a_ping_between_arrive_whole():
    """One stream: a small message, a message in three fragments with a ping between
    two of them, a 16-bit-length and a 64-bit-length message, a text message in two
    fragments; cut at random points into reads. The ping is answered by Sanic."""
    server, url, got = await _echo_server()
    big = os.urandom(70_000)
    stream = (frame(2, b"first")
              + frame(2, b"frag-a", fin=False) + frame(9, b"are you there") + frame(0, b"frag-b", fin=False)
              + frame(0, b"frag-c")
              + frame(2, b"m" * 1000) + frame(2, big)
              + frame(1, "héllo ".encode(), fin=False) + frame(0, "wörld".encode()))
    expected = [b"first", b"frag-afrag-bfrag-c", b"m" * 1000, big, "héllo wörld"]
    rng = random.Random(1515)
    try:
        for _ in range(12):
            got.clear()
            client = await RawClient.connect(url)
            cuts = sorted(rng.sample(range(1, len(stream)), 6)) + [len(stream)]
            if rng.random() < 0.5:  # cuts inside the headers of the first frames too
                cuts = sorted({1, 3, 7, 9, *cuts})
            start = 0
            for cut in cuts:
                await client.send(stream[start:cut])
                start = cut
                await asyncio.sleep(0)
            replies = []
            pong = None
            while len(replies) < len(expected):
                opcode, payload = await client.next_frame()
                if opcode == 10:
                    pong = payload
                else:
                    replies.append(payload)
            assert replies == [repr(m).encode() for m in expected]
            assert got[1:] == expected
            if pong is None:  # the pong may follow the replies
                assert await client.next_frame() == (10, b"are you there")
            else:
                assert pong == b"are you there"
            client.close()
    finally:
        await _stop(server)


@pytest.mark.parametrize("stream, code", [
    (frame(2, b"unmasked", mask=False), 1002),
    (frame(2, b"reserved bit", rsv=0x40), 1002),
    (frame(3, b"unknown opcode"), 1002),
    (frame(9, b"p" * 126), 1002),  # a control frame over 125 bytes
    (frame(9, b"ping", fin=False), 1002),  # a fragmented control frame
    (frame(0, b"continuation of nothing"), 1002),
    (frame(2, b"start", fin=False) + frame(2, b"a new message inside it"), 1002),
    (frame(1, b"\xff\xfe not UTF-8"), 1007),
    (frame(1, b"caf\xc3", fin=False) + frame(0, b"\xa9 is UTF-8 only when joined"), None),
], ids=["unmasked", "rsv", "opcode", "long-control", "fragmented-control", "stray-continuation",
        "interrupted-fragments", "bad-utf8", "utf8-across-fragments"])
async def test_protocol_errors_close_with_the_websocket_codes(stream, code):
    server, url, got = await _echo_server()
    try:
        client = await RawClient.connect(url)
        await client.send(frame(2, b"before"))
        assert await client.next_frame() == (2, repr(b"before").encode())
        await client.send(stream)
        if code is None:  # a valid stream: the text arrives and the connection stays
            assert await client.next_frame() == (2, repr("café is UTF-8 only when joined").encode())
            await client.send(frame(8, struct.pack("!H", 1000)))
            assert await client.close_code() == 1000
        else:
            assert await client.close_code() == code
        await wait_until(lambda: "closed" in got, 5, "the reading to end")
        assert got[:2] == [("reader", True), b"before"]
        client.close()
    finally:
        await _stop(server)


@pytest.mark.parametrize("stream", [
    frame(2, b"z" * 2000),
    frame(2, b"z" * 1000, fin=False) + frame(0, b"z" * 1000),
    # only the header of a huge frame: refused at once, not buffered
    bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**40) + b"mask",
], ids=["one-frame", "fragments", "huge-header"])
async def test_a_message_over_the_size_limit_closes_with_1009(stream):
    server, url, got = await _echo_server(WEBSOCKET_MAX_SIZE=1500)
    try:
        client = await RawClient.connect(url)
        await client.send(stream)
        assert await client.close_code() == 1009
        await wait_until(lambda: "closed" in got, 5, "the reading to end")
        assert got == [("reader", True), "closed"]
        client.close()
    finally:
        await _stop(server)


async def test_reading_pauses_for_a_client_that_sends_faster_than_it_is_read():
    state: dict = {}
    release = asyncio.Event()

    async def handler(request, ws):
        reader = FrameReader.of(ws)
        state["transport"] = ws.io_proto.transport
        await release.wait()  # not reading while the client floods
        state["messages"] = [await reader.recv() for _ in range(3 * PAUSE_AT)]
        state["reading after"] = state["transport"].is_reading()
        await ws.send(b"done")
        await reader.recv()

    server, url = await _serve(handler, protocol=HetuWebSocketProtocol)
    try:
        client = await RawClient.connect(url)
        await client.send(b"".join(frame(2, str(i).encode()) for i in range(3 * PAUSE_AT)))
        await wait_until(lambda: "transport" in state and not state["transport"].is_reading(), 5,
                         "reading to pause")
        release.set()
        assert await client.next_frame() == (2, b"done")
        assert state["messages"] == [str(i).encode() for i in range(3 * PAUSE_AT)]
        assert state["reading after"] is True
        client.close()
    finally:
        release.set()
        await _stop(server)


async def test_a_read_times_out_and_a_cancelled_read_stays_cancelled():
    """``recv(timeout)`` raises TimeoutError (the hello's deadline); cancelling the
    reading task from outside (the server shutting down) ends it cancelled, and the
    reader can be read again after either."""
    outcome: dict = {}

    async def handler(request, ws):
        reader = FrameReader.of(ws)
        try:
            await reader.recv(timeout=0.05)
        except TimeoutError:
            outcome["timeout"] = True
        task = asyncio.create_task(reader.recv())
        await wait_until(lambda: reader._waiter is not None, 5, "the reader to wait for a message")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            outcome["cancelled"] = True
        outcome["then"] = await reader.recv()

    server, url = await _serve(handler, protocol=HetuWebSocketProtocol)
    try:
        async with websockets.connect(url) as client:
            await wait_until(lambda: "cancelled" in outcome, 5, "the cancelled read")
            await client.send(b"after")
            await wait_until(lambda: "then" in outcome, 5, "the read after")
        assert outcome == {"timeout": True, "cancelled": True, "then": b"after"}
    finally:
        await _stop(server)


async def test_the_end_of_the_stream_without_a_close_frame_ends_the_reading():
    """EOF with no close frame: Sanic cancels its ``recv_cancel`` future, which the
    reader watches, and cancels the handler; the reader then answers None."""
    readers: list = []
    ended: list = []

    async def handler(request, ws):
        reader = FrameReader.of(ws)
        readers.append(reader)
        try:
            while (message := await reader.recv()) is not None:
                await ws.send(message)
            ended.append("None")
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    server, url = await _serve(handler, protocol=HetuWebSocketProtocol)
    try:
        client = await RawClient.connect(url)
        await client.send(frame(2, b"last words"))
        assert await client.next_frame() == (2, b"last words")
        client.writer.write_eof()
        await wait_until(lambda: ended, 5, "the reading to end")
        assert await asyncio.wait_for(readers[0].recv(), 1) is None
        client.close()
    finally:
        await _stop(server)
