"""The direct write path of pushes and replies, on a real Sanic websocket.

It uses Sanic internals (see hetu/server/ws_writer.py); these tests fail when an
upgrade of Sanic or websockets moves them, instead of the path silently switching off.
The read path has its own tests: test_ws_reader.py.
"""

from __future__ import annotations

import asyncio
import uuid

import websockets
from sanic import Sanic

from hetu.server.ws_writer import DirectWriter
from tests.conftest import free_port


async def _serve(handler, protocol=None, **config):
    app = Sanic(f"ws_writer_{uuid.uuid4().hex}")  # Sanic refuses a name used before
    app.config.TOUCHUP = False
    app.config.update(config)
    app.add_websocket_route(handler, "/ws")
    port = free_port()
    extra = {"protocol": protocol} if protocol is not None else {}
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, **extra)
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
