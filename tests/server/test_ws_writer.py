"""The direct write path of pushes and replies, and the direct read path of a
connection's receive loop, on a real Sanic websocket.

They use Sanic internals (see hetu/server/ws_writer.py and ws_reader.py); these tests
fail when an upgrade of Sanic or websockets moves them, instead of the paths silently
switching off.
"""

from __future__ import annotations

import asyncio

import websockets
from sanic import Sanic

from hetu.server.ws_reader import DirectReader
from hetu.server.ws_writer import DirectWriter
from tests.conftest import free_port
from tests.waiting import wait_until


async def _serve(handler):
    app = Sanic(f"ws_writer_{free_port()}")
    app.config.TOUCHUP = False
    app.add_websocket_route(handler, "/ws")
    port = free_port()
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    return server, f"ws://127.0.0.1:{port}/ws"


async def test_a_sanic_websocket_has_what_the_direct_writer_needs():
    seen: dict = {}
    done = asyncio.Event()

    async def handler(request, ws):
        writer = DirectWriter.of(ws)
        seen["writer"] = writer
        seen["ready"] = writer is not None and writer.ready()
        if writer is not None:
            writer.send(b"first")
            writer.send(b"x" * 300)  # a 16-bit length
            writer.send(b"y" * 70_000)  # a 64-bit length
        await ws.send(b"third")  # the regular path still follows in order
        await done.wait()

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            got = [await asyncio.wait_for(client.recv(), 5) for _ in range(4)]
            done.set()
        assert seen["writer"] is not None and seen["ready"] is True
        assert got == [b"first", b"x" * 300, b"y" * 70_000, b"third"]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_the_direct_writer_is_not_ready_while_another_send_holds_the_socket():
    result: dict = {}
    done = asyncio.Event()

    async def handler(request, ws):
        writer = DirectWriter.of(ws)
        ws.ws_proto.extensions = ["permessage-deflate, say"]  # frames would differ: no writer
        result["with an extension"] = DirectWriter.of(ws)
        ws.ws_proto.extensions = []
        async with ws.conn_mutex:
            result["during"] = writer.ready()
        result["after"] = writer.ready()
        await ws.close()
        result["closed"] = writer.ready()
        done.set()

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            await asyncio.wait_for(done.wait(), 5)
            del client
        assert result == {"with an extension": None, "during": False, "after": True, "closed": False}
    finally:
        server.close()
        await server.wait_closed()


def test_an_object_without_the_parts_gets_no_direct_writer():
    assert DirectWriter.of(object()) is None


async def test_a_sanic_websocket_has_what_the_direct_reader_needs():
    got: list = []
    ended = asyncio.Event()

    async def handler(request, ws):
        reader = DirectReader.of(ws)
        got.append(reader is not None)
        try:
            while (message := await reader.recv()) is not None:
                got.append(message)
                await ws.send(b"ok")
            got.append("closed")
        finally:
            ended.set()

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url) as client:
            for message in (b"one", b"two" * 100, "three"):
                await client.send(message)
                assert await asyncio.wait_for(client.recv(), 5) == b"ok"
        # the peer's close frame ends the reading with None, not an exception
        await asyncio.wait_for(ended.wait(), 5)
        assert got == [True, b"one", b"two" * 100, "three", "closed"]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_cancelled_reader_task_stays_cancelled():
    """Cancelling the reading task from outside (the server shutting down) is not
    taken for the peer closing: the task ends cancelled."""
    outcome: dict = {}

    async def handler(request, ws):
        reader = DirectReader.of(ws)
        task = asyncio.create_task(reader.recv())
        await wait_until(lambda: reader._waiting is task, 5, "the reader to wait for a frame")
        task.cancel()
        try:
            outcome["result"] = await task
        except asyncio.CancelledError:
            outcome["result"] = "cancelled"
        outcome["done"] = True

    server, url = await _serve(handler)
    try:
        async with websockets.connect(url):
            await wait_until(lambda: outcome.get("done"), 5, "the handler to finish")
        assert outcome == {"result": "cancelled", "done": True}
    finally:
        server.close()
        await server.wait_closed()


def test_an_object_without_the_parts_gets_no_direct_reader():
    assert DirectReader.of(object()) is None
