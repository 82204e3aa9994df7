"""The websocket gateway over a real socket: handshake, rpc, failures, limits, disconnects."""

from __future__ import annotations

import asyncio
import os
import urllib.request

import msgpack
import pytest
import websockets

from hetu.client import CallFailed, CallRejected, ConnectionClosed, default_pipeline
from tests.server.conftest import AUTH_KEY, connect
from tests.waiting import wait_until


async def closed_without_reply(ws) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed:
        return True
    return False


def test_health_route(server):
    body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/").read().decode()
    assert body.startswith("Powered by HeTu(v")


async def test_rpc_replies_in_order(server):
    client = await connect(server)
    try:
        results = await asyncio.gather(*(client.call("post", 1, n, f"n{n}") for n in range(20)))
        assert all(isinstance(r, int) for r in results)
        assert results == sorted(results)  # ids are time-ordered: calls ran in sending order
        assert await client.call("login", 7) == {"id": 7}
        assert await client.call("edit", results[0], 5, "x") == "ok"
    finally:
        await client.close()


async def test_motd_is_a_text_frame(server):
    client = await connect(server)
    try:
        assert (await client.motd()).startswith("👋 Welcome to HeTu Database! v")
    finally:
        await client.close()


async def test_guard_rejection_keeps_the_connection(server):
    client = await connect(server)
    try:
        assert await client.call("limited") == "fine"
        assert await client.call("limited") == "fine"
        with pytest.raises(CallRejected) as rejected:
            await client.call("limited")
        assert rejected.value.code == "RATE_LIMITED"
        assert await client.call("login", 8) == {"id": 8}
    finally:
        await client.close()


@pytest.mark.parametrize(
    "name, args",
    [("crash", ()), ("nope", ()), ("post", ()), ("post", (1, 2, "a", "extra")), ("write_secret", ("x",)),
     ("admin_only", ()), ("on_disconnect", ()), ("numpy_reply", ())],
)
async def test_release_mode_drops_the_connection_on_failure(server, name, args):
    client = await connect(server)
    with pytest.raises(ConnectionClosed):
        await client.call(name, *args)
    await client.close()


@pytest.mark.parametrize(
    "name, args, reason",
    [("crash", (), "RuntimeError: boom for test"), ("nope", (), "server rejected the request."),
     ("post", (), "server rejected the request."), ("write_secret", ("x",), "server rejected the request.")],
)
async def test_debug_mode_answers_failures_with_err(debug_server, name, args, reason):
    client = await connect(debug_server)
    try:
        with pytest.raises(CallFailed) as failed:
            await client.call(name, *args)
        assert failed.value.reason == reason and failed.value.name == name
        assert await client.call("login", 3) == {"id": 3}  # still connected
    finally:
        await client.close()


async def test_debug_mode_reports_unencodable_responses(debug_server):
    client = await connect(debug_server)
    try:
        with pytest.raises(CallFailed, match="TypeError"):
            await client.call("numpy_reply")
        assert await client.call("login", 4) == {"id": 4}
    finally:
        await client.close()


async def test_wrong_auth_key_gets_the_empty_reply_then_close(server):
    pipeline = default_pipeline("wrong key")
    async with websockets.connect(server.url) as ws:
        _, hello = pipeline.client_hello()
        await ws.send(hello)
        assert await ws.recv() == b"\x90"
        assert await closed_without_reply(ws)


async def test_unknown_instance_is_closed_without_reply(server):
    pipeline = default_pipeline(AUTH_KEY)
    async with websockets.connect(server.url.replace("/hetu/test", "/hetu/other")) as ws:
        _, hello = pipeline.client_hello()
        await ws.send(hello)
        assert await closed_without_reply(ws)


@pytest.mark.parametrize("hello", [msgpack.packb([b""]), b"\xc1garbage", msgpack.packb("text"), "text hello"])
async def test_malformed_hellos_are_closed(server, hello):
    async with websockets.connect(server.url) as ws:
        await ws.send(hello)
        try:
            reply = await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            return
        assert reply == b"\x90"
        assert await closed_without_reply(ws)


@pytest.mark.parametrize("frame", [b"", "a text frame", b"\x00garbage"])
async def test_text_empty_or_garbage_frames_close_the_connection(server, frame):
    client = await connect(server)
    await client.ws.send(frame)
    with pytest.raises(ConnectionClosed):
        await client.call("login", 1)
    await client.close()


@pytest.mark.parametrize("message", [["bogus"], [], [1, 2], {"rpc": 1}, ["rpc"], ["rpc", 5], ["unsub"], ["sub"]])
async def test_malformed_messages_close_the_connection(server, message):
    client = await connect(server)
    await client.send(message, expect_reply=False)
    with pytest.raises(ConnectionClosed):
        await client.call("login", 1)
    await client.close()


async def test_oversize_messages_close_the_connection(tmp_path):
    from tests.server.conftest import ServerProcess

    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'db.db'}", WEBSOCKET_MAX_SIZE=4096)
    try:
        client = await connect(srv)
        with pytest.raises(ConnectionClosed):
            await client.call("post", 1, 1, os.urandom(50_000).hex())  # incompressible
        await client.close()
        client = await connect(srv)  # the server still serves others
        assert await client.call("login", 1) == {"id": 1}
        await client.close()
    finally:
        srv.stop()


async def test_client_send_limit_closes_the_connection(tmp_path):
    from tests.server.conftest import ServerProcess

    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'db.db'}", CLIENT_SEND_LIMITS=[[5, 60]])
    try:
        client = await connect(srv)
        for n in range(5):
            await client.call("post", 1, n)
        with pytest.raises(ConnectionClosed):
            await client.call("post", 1, 99)
        await client.close()
        client = await connect(srv)
        assert await client.call("login", 1) == {"id": 1}
        # elevated: ×10 the limit
        for n in range(40):
            await client.call("post", 1, n)
        await client.close()
    finally:
        srv.stop()


async def test_on_disconnect_runs_once_when_a_client_leaves(server):
    client = await connect(server)
    await client.call("login", 555)
    await client.close()
    probe = await connect(server)

    async def goodbye():
        return (await probe.subscribe_get("Goodbye", "owner", 555))[1]

    try:
        row = await wait_until(goodbye, 5, "on_disconnect's Goodbye row", pause=0.05)
        assert row["count"] == 1
    finally:
        await probe.close()


async def test_a_second_login_kicks_the_first_connection(server):
    first = await connect(server)
    second = await connect(server)
    try:
        await first.call("login", 900)
        await second.call("login", 900)
        with pytest.raises(ConnectionClosed):
            await first.call("post", 1, 1)
        assert await second.call("login", 900) == {"id": 900}
    finally:
        await first.close()
        await second.close()


async def test_one_client_failing_does_not_disturb_others(server):
    good = await connect(server)
    try:
        bad = await connect(server)
        await bad.ws.send(b"\xff" * 64)
        await asyncio.wait_for(bad.wait_closed(), 5)  # the server dropped it...
        assert bad.closed
        assert isinstance(await good.call("post", 2, 2), int)  # ...and serves the other
        await bad.close()
    finally:
        await good.close()
