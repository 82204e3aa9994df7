"""Hostile input against a live server: it drops only the offender and keeps serving."""

from __future__ import annotations

import asyncio

import msgpack
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hetu.client import HeTuClient, default_pipeline
from tests.server.conftest import AUTH_KEY

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=40), st.binary(max_size=40),
)
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5), max_leaves=20)
tags = st.sampled_from(["rpc", "sub", "unsub", "motd", "updt", "rsp", "", "RPC"])
names = st.sampled_from(["post", "edit", "login", "limited", "crash", "Board", "Secret", "Nope", "get", "range"])
messages = st.one_of(
    st.lists(values, max_size=8),
    st.tuples(tags, names).map(list),
    st.tuples(tags, names, values, values, values, values).map(list),
    st.tuples(st.just("sub"), names, st.sampled_from(["get", "range", "x"]), st.text(max_size=10), values, values, values).map(list),
    values,
)


async def _attack(url: str, payload, raw: bytes | None, before_handshake: bool) -> None:
    pipeline = default_pipeline(AUTH_KEY)
    try:
        async with websockets.connect(url, max_size=None, open_timeout=5, close_timeout=1) as ws:
            if before_handshake:
                await ws.send(raw if raw is not None else msgpack.packb(payload, use_bin_type=True))
            else:
                pending, hello = pipeline.client_hello()
                await ws.send(hello)
                ctxs = pipeline.client_handshake(pending, await ws.recv())
                if raw is not None:
                    await ws.send(raw)
                else:
                    try:
                        await ws.send(pipeline.encode(ctxs, payload))
                    except (TypeError, ValueError, OverflowError):
                        return
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except (TimeoutError, websockets.ConnectionClosed):
                pass
    except (websockets.ConnectionClosed, websockets.InvalidHandshake, OSError, ValueError):
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    payload=messages,
    raw=st.one_of(st.none(), st.binary(max_size=300)),
    before_handshake=st.booleans(),
)
def test_random_frames_never_take_the_server_down(server, payload, raw, before_handshake):
    asyncio.run(_attack(server.url, payload, raw, before_handshake))
    assert server.proc.poll() is None


def test_a_bystander_is_served_throughout_an_attack(server):
    async def scenario():
        bystander = await HeTuClient.connect(server.url, auth_key=AUTH_KEY)
        sub_id, _ = await bystander.subscribe_range("Board", "owner", 777, 777, 10)
        rng_payloads = [b"\x00" * n for n in (1, 15, 16, 17, 64)] + [b"\xff" * 70_000]
        for n in range(30):
            await _attack(server.url, ["rpc", "post", n], rng_payloads[n % len(rng_payloads)], n % 2 == 0)
            assert isinstance(await bystander.call("post", 777, n, "alive"), int)
        seen = 0
        while (item := await bystander.next_update(0.5)) is not None:
            seen += item[0] == sub_id
        assert seen >= 1
        await bystander.close()

    asyncio.run(scenario())
    assert server.proc.poll() is None  # the server process is alive
