"""HeTu's ``zstd`` and ``brotli`` packet layers: handshake, streams, limits and config,
then over a real socket to `hetu start`, alone and stacked with zlib and crypto."""

from __future__ import annotations

import asyncio
import os

import msgpack
import numpy as np
import pytest
import websockets

import hetu
from hetu.client import HeTuClient
from hetu.server.pipeline import (
    BrotliLayer,
    CryptoLayer,
    HandshakeError,
    JSONBinaryLayer,
    MessagePipeline,
    MessageProcessLayerFactory,
    ZstdLayer,
)
from hetu.server.pipeline.zstd import MAX_CLIENT_DICTIONARY, train_dictionary, zstd
from tests.server.conftest import AUTH_KEY, ServerProcess

ZSTD_DICT_MAGIC = bytes.fromhex("37a430ec")
UPDT = ["updt", "ChatMessage.id[0:9223372036854775807:1][:100]",
        {7390000000000000001: {"id": 7390000000000000001, "owner": 1001, "name": "alice", "text": "hello",
                               "kind": "chat", "created_at_ms": 1700000000000}}]


@hetu.define_component(namespace="pytest_layers", permission=hetu.Permission.EVERYBODY, force=True)
class ChatMessage(hetu.BaseComponent):
    """The chat example's message table (not the example itself: other modules load it)."""

    owner: np.int64 = hetu.property_field(0, index=True)
    name: str = hetu.property_field("", dtype="U32")
    text: str = hetu.property_field("", dtype="U256")
    kind: str = hetu.property_field("chat", dtype="U16")
    created_at_ms: np.int64 = hetu.property_field(0, index=True)


@hetu.define_component(namespace="pytest_layers", permission=hetu.Permission.EVERYBODY, force=True)
class OnlineUser(hetu.BaseComponent):
    owner: np.int64 = hetu.property_field(0, unique=True)
    name: str = hetu.property_field("", unique=True, dtype="U32")
    online: bool = hetu.property_field(False)


@pytest.fixture(scope="module")
def chat_components():
    return [ChatMessage, OnlineUser]


@pytest.fixture(scope="module")
def chat_dictionary(chat_components):
    return train_dictionary(chat_components, 1024)


def connected(server_layers: list, client_layers: list) -> tuple[MessagePipeline, list, MessagePipeline, list]:
    """Handshake ``server_layers`` with ``client_layers`` in memory: (server, its
    contexts, client, its contexts)."""
    server, client = MessagePipeline(server_layers), MessagePipeline(client_layers)
    pending, hello = client.client_hello()
    server_ctxs, reply = server.handshake(server.decode(None, hello))
    return server, server_ctxs, client, client.client_handshake(pending, reply)


def exchange(server, server_ctxs, client, client_ctxs, rounds: int = 5) -> list[int]:
    """Messages both ways; returns the sizes of the server's frames."""
    sizes = []
    for i in range(rounds):
        frame = server.encode(server_ctxs, UPDT)
        sizes.append(len(frame))
        assert client.decode(client_ctxs, frame) == UPDT
        request = ["rpc", "user_chat", "hello " * i]
        assert server.decode(server_ctxs, client.encode(client_ctxs, request)) == request
    return sizes


# -- in memory ------------------------------------------------------------------------------


def test_the_layers_take_hetus_keyword_arguments_and_defaults():
    z = MessageProcessLayerFactory.create(type="ZSTD", level=3, dict_size=1024)
    assert (z.level, z.dict_size) == (3, 1024) and (ZstdLayer().level, ZstdLayer().dict_size) == (3, 1024)
    b = MessageProcessLayerFactory.create(type="brotli", quality=3, lgwin=22, lgblock=0, mode="GENERIC")
    d = BrotliLayer()
    assert (b.quality, b.lgwin, b.lgblock, b.mode) == (d.quality, d.lgwin, d.lgblock, d.mode) == (3, 22, 0, 0)
    assert BrotliLayer(mode="text").mode == BrotliLayer(mode=1).mode == 1


@pytest.mark.parametrize("entry, message", [
    ({"type": "zstd", "level": 99}, "level"),
    ({"type": "zstd", "dict_size": 10}, "dict_size"),
    ({"type": "zstd", "window_log": 30}, "window_log"),
    ({"type": "zstd", "levle": 3}, "levle"),
    ({"type": "brotli", "quality": 12}, "quality"),
    ({"type": "brotli", "lgwin": 9}, "lgwin"),
    ({"type": "brotli", "lgblock": 8}, "lgblock"),
    ({"type": "brotli", "mode": "PICTURE"}, "mode"),
])
def test_bad_layer_config_says_which_entry_and_value(entry, message):
    with pytest.raises(ValueError, match=f"PACKET_LAYERS entry {{type: {entry['type']}}}.*{message}"):
        MessageProcessLayerFactory.create(**entry)


def test_both_layers_take_part_in_the_handshake():
    pipe = MessagePipeline([JSONBinaryLayer(), ZstdLayer(), BrotliLayer(), CryptoLayer(None)])
    assert pipe.num_handshake_layers == 3
    _, hello = pipe.client_hello()
    assert msgpack.unpackb(hello)[:2] == [b"", b""]  # zstd: no dictionary of its own; brotli: nothing


def test_zstd_server_trains_one_dictionary_per_worker_and_sends_it(chat_components, monkeypatch):
    from hetu.system.definer import SystemClusters

    monkeypatch.setattr(SystemClusters, "get_components", lambda self, namespace=None: dict.fromkeys(chat_components, 0))
    layer = ZstdLayer(dict_size=1024)
    _, first = layer.handshake(b"")
    _, second = layer.handshake(b"")
    assert first is second and first.startswith(ZSTD_DICT_MAGIC) and len(first) <= 1024
    zstd.ZstdDict(first)  # a dictionary any Zstandard library loads


def test_zstd_streams_round_trip_and_the_dictionary_helps(chat_dictionary):
    with_dict = exchange(*connected([JSONBinaryLayer(), ZstdLayer(dictionary=chat_dictionary)],
                                    [JSONBinaryLayer(), ZstdLayer()]))
    without = exchange(*connected([JSONBinaryLayer(), ZstdLayer(dictionary=b"")],
                                  [JSONBinaryLayer(), ZstdLayer()]))
    assert with_dict[0] < without[0]
    assert with_dict[-1] < with_dict[0]  # one stream per connection: later frames reuse earlier ones


def test_zstd_uses_a_clients_dictionary_for_that_connection_only(chat_dictionary, chat_components):
    own = train_dictionary(chat_components[:1], 512)
    server_layer = ZstdLayer(dictionary=chat_dictionary)
    _, reply = server_layer.handshake(own)
    assert reply == own
    exchange(*connected([JSONBinaryLayer(), server_layer], [JSONBinaryLayer(), ZstdLayer(dictionary=own)]))
    assert server_layer.handshake(b"")[1] == chat_dictionary  # the worker's dictionary is unchanged


def test_zstd_refuses_a_bad_or_huge_client_dictionary():
    layer = ZstdLayer(dictionary=b"")
    with pytest.raises(HandshakeError, match="invalid"):
        layer.handshake(b"not a dictionary at all")
    with pytest.raises(HandshakeError, match="larger"):
        layer.handshake(ZSTD_DICT_MAGIC + bytes(MAX_CLIENT_DICTIONARY))
    with pytest.raises(HandshakeError, match="bytes"):
        layer.handshake("text")


def test_brotli_ignores_the_hello_and_answers_empty():
    ctx, reply = BrotliLayer().handshake(b"whatever")
    assert reply == b"" and ctx is not None
    sizes = exchange(*connected([JSONBinaryLayer(), BrotliLayer()], [JSONBinaryLayer(), BrotliLayer()]))
    assert sizes[-1] < sizes[0]


@pytest.mark.parametrize("make", [lambda: ZstdLayer(dictionary=b"", max_inflated=1000),
                                  lambda: BrotliLayer(max_inflated=1000)])
def test_a_message_inflating_beyond_the_limit_is_undecodable(make):
    sender, receiver = make(), make()
    ctx, _ = receiver.handshake(b"")
    peer = sender.client_handshake(None, b"")
    assert receiver.decode(ctx, sender.encode(peer, b"a" * 1000)) == b"a" * 1000
    with pytest.raises(ValueError, match="beyond 1000"):
        receiver.decode(ctx, sender.encode(peer, b"b" * 100_000))


def test_garbage_is_undecodable_by_zstd():
    layer = ZstdLayer(dictionary=b"")
    ctx, _ = layer.handshake(b"")
    with pytest.raises(ValueError, match="undecodable"):
        layer.decode(ctx, os.urandom(64))


def test_brotli_garbage_is_refused_or_bounded():
    """A Brotli stream has no checksum or message framing: about one random string in
    ten is a valid start of a stream (an uncompressed block, say), and decodes to some
    bytes or none. What the layer guarantees is that garbage gives a ValueError or at
    most ``max_inflated`` bytes, never another exception; the layers above (msgpack,
    and the AEAD when configured) then refuse it."""
    import random

    layer = BrotliLayer(max_inflated=1000)
    rng = random.Random(7)
    refused = 0
    for _ in range(500):
        ctx, _ = layer.handshake(b"")
        garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
        try:
            out = layer.decode(ctx, garbage)
        except ValueError:
            refused += 1
        else:
            assert isinstance(out, bytes) and len(out) <= 1000
    assert refused > 300  # most garbage is refused by the layer itself


# -- over a real socket ------------------------------------------------------------------------

STACKS = {
    "zstd": [{"type": "jsonb"}, {"type": "zstd", "level": 3, "dict_size": 1024}],
    "brotli": [{"type": "jsonb"}, {"type": "brotli", "quality": 3, "lgwin": 22, "lgblock": 0, "mode": "GENERIC"}],
    "zstd+crypto": [{"type": "jsonb"}, {"type": "zstd"}, {"type": "crypto", "auth_key": AUTH_KEY}],
    "brotli+crypto": [{"type": "jsonb"}, {"type": "brotli"}, {"type": "crypto", "auth_key": AUTH_KEY}],
    "all": [{"type": "jsonb"}, {"type": "zlib", "level": 1}, {"type": "zstd"}, {"type": "brotli"},
            {"type": "crypto", "auth_key": AUTH_KEY}],
}


@pytest.fixture(scope="module", params=sorted(STACKS))
def layered_server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layers")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'db.db'}", PACKET_LAYERS=STACKS[request.param])
    yield srv, STACKS[request.param]
    srv.stop()


async def test_calls_and_pushes_travel_through_the_stack(layered_server):
    srv, layers = layered_server
    writer = await HeTuClient.connect(srv.url, pipeline=MessagePipeline.from_config(layers))
    reader = await HeTuClient.connect(srv.url, pipeline=MessagePipeline.from_config(layers))
    try:
        row_id = await writer.call("post", 801, 1, "über 🎲 " * 40)
        sub_id, row = await reader.subscribe_get("Board", "id", row_id)
        assert row["note"].startswith("über 🎲")
        for score in range(2, 6):
            await writer.call("edit", row_id, score, f"note {score}")
        deadline = asyncio.get_running_loop().time() + 5
        seen = None
        while seen != 5 and asyncio.get_running_loop().time() < deadline:
            item = await reader.next_update(1)
            if item and item[0] == sub_id:
                seen = item[1][row_id]["score"]
        assert seen == 5
    finally:
        await writer.close()
        await reader.close()


async def test_the_handshake_reply_has_one_entry_per_handshake_layer(layered_server):
    srv, layers = layered_server
    pipeline = MessagePipeline.from_config(layers)
    async with websockets.connect(srv.url) as ws:
        _, hello = pipeline.client_hello()
        await ws.send(hello)
        reply = msgpack.unpackb(await ws.recv())
    kinds = [entry["type"] for entry in layers if entry["type"] != "jsonb"]
    assert len(reply) == len(kinds) == pipeline.num_handshake_layers
    for kind, entry in zip(kinds, reply):
        if kind == "zstd":
            assert entry.startswith(ZSTD_DICT_MAGIC)
        elif kind == "brotli":
            assert entry == b""


@pytest.fixture(scope="module", params=[name for name in sorted(STACKS) if "zstd" in name or name == "all"])
def zstd_server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zstd")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'db.db'}", PACKET_LAYERS=STACKS[request.param])
    yield srv, STACKS[request.param]
    srv.stop()


async def test_a_client_may_bring_its_own_zstd_dictionary(zstd_server, chat_dictionary):
    srv, layers = zstd_server
    client_layers = [dict(e, dictionary=chat_dictionary) if e["type"] == "zstd" else e for e in layers]
    client = await HeTuClient.connect(srv.url, pipeline=MessagePipeline.from_config(client_layers))
    try:
        assert await client.call("post", 802, 1, "with my dictionary")
    finally:
        await client.close()


async def test_a_client_with_one_layer_too_many_is_refused(layered_server):
    srv, layers = layered_server
    other = MessagePipeline.from_config(layers)
    other.add_layer(BrotliLayer())
    async with websockets.connect(srv.url) as ws:
        _, hello = other.client_hello()
        await ws.send(hello)
        try:
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x90"
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            return
        raise AssertionError("the server kept a connection whose hello it could not use")
