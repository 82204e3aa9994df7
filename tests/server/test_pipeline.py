"""The message pipeline against HeTu's wire vectors (fixed keys), and its failure modes."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import msgpack
import pytest

from hetu.server.pipeline import (
    CryptoLayer,
    HandshakeError,
    JSONBinaryLayer,
    MessagePipeline,
    MessageProcessLayer,
    MessageProcessLayerFactory,
    ZlibLayer,
    build_dictionary,
)
from hetu.server.pipeline import crypto as crypto_mod
from hetu.server.pipeline.crypto import signed_hello

V = json.loads((Path(__file__).parent / "vectors.json").read_text())
HEX = bytes.fromhex
CLIENT_SK, CLIENT_PK = HEX(V["client_sk"]), HEX(V["client_pk"])
SERVER_SK, SERVER_PK = HEX(V["server_sk"]), HEX(V["server_pk"])
ZDICT = (
    b"ChatMessage\nOnlineUser\n_version\ncreated_at_ms\nid\nkind\nlast_seen_ms\nname\nonline\nowner\ntext\nupdt"
)
AUTH_KEY = "password123"
SUB_ID = "ChatMessage.id[0:9223372036854775807:1][:1024]"
ROW1 = {"created_at_ms": 1700000000000, "id": 7390000000000000001, "kind": "system", "name": "alice",
        "owner": 1001, "text": "alice joined the chat"}
ROW2 = {"created_at_ms": 1700000000500, "id": 7390000000000000002, "kind": "chat", "name": "alice",
        "owner": 1001, "text": "hello"}
UROW = {"id": 7390000000000000003, "last_seen_ms": 1700000000000, "name": "alice", "online": 1, "owner": 1001}
USUB = "OnlineUser.id[7390000000000000003:None:1][:1]"
# (direction, message) of every frame in the vectors, in order
MESSAGES = [
    ("C", ["rpc", "user_login", 1001, "alice"]),
    ("S", ["rsp", "ok"]),
    ("C", ["sub", "ChatMessage", "range", "id", 0, 9223372036854775807, 1024, False, True]),
    ("S", ["sub", SUB_ID, [ROW1]]),
    ("C", ["rpc", "user_chat", "hello"]),
    ("S", ["rsp", "ok"]),
    ("S", ["updt", SUB_ID, {7390000000000000002: ROW2}]),
    ("C", ["unsub", SUB_ID]),
    ("C", ["sub", "OnlineUser", "get", "owner", 1001]),
    ("S", ["sub", USUB, UROW]),
    ("S", ["rej", "user_chat", "RATE_LIMITED"]),
    ("S", ["err", "user_chat", "AssertionError: call user_login first"]),
    ("S", ["sub", None, None]),
    ("S", ["updt", USUB, {7390000000000000003: None}]),
]


def default_pipeline(auth_key=AUTH_KEY, dictionary=ZDICT) -> MessagePipeline:
    return MessagePipeline([JSONBinaryLayer(), ZlibLayer(level=1, dictionary=dictionary), CryptoLayer(auth_key)])


@pytest.fixture
def fixed_keys(monkeypatch):
    """Make the next key pairs the vectors' fixed ones (client first, then server)."""
    pairs = [(CLIENT_SK, CLIENT_PK), (SERVER_SK, SERVER_PK)]
    monkeypatch.setattr(crypto_mod, "keypair", lambda: pairs.pop(0))
    monkeypatch.setattr(crypto_mod.os, "urandom", lambda n: b"\x01" * n)


def test_hello_frames_match_the_vectors():
    legacy = JSONBinaryLayer().encode(None, [b"", CLIENT_PK])
    assert legacy.hex() == V["hello_frame_legacy"]
    signed = signed_hello(CLIENT_PK, AUTH_KEY, nonce=b"\x01" * 16)
    assert signed[60:].hex() == V["hmac"]
    assert JSONBinaryLayer().encode(None, [b"", signed]).hex() == V["hello_frame_signed"]


def test_the_chat_dictionary_and_server_reply_match_the_vectors():
    from tests.system.test_chat_example import load_chat_app

    app = load_chat_app()
    assert build_dictionary([app.ChatMessage, app.OnlineUser]) == ZDICT
    assert zlib.adler32(ZDICT) == 0x735C22AB
    assert JSONBinaryLayer().encode(None, [ZDICT, SERVER_PK]).hex() == V["server_reply"]


def test_admin_components_stay_out_of_the_dictionary():
    from hetu.endpoint.connection import Connection

    assert build_dictionary([Connection]) == b"updt"


def test_session_key_matches_the_vectors():
    assert crypto_mod.session_key(CLIENT_SK, SERVER_PK).hex() == V["session_key"]
    assert crypto_mod.session_key(SERVER_SK, CLIENT_PK).hex() == V["session_key"]


def test_a_whole_conversation_matches_the_vectors_byte_for_byte(fixed_keys):
    client, server = default_pipeline(), default_pipeline()
    pending, hello = client.client_hello()
    assert hello.hex() == V["hello_frame_signed"]
    server_ctxs, reply = server.handshake(server.decode(None, hello))
    assert reply.hex() == V["server_reply"]
    client_ctxs = client.client_handshake(pending, reply)
    for (direction, message), frame in zip(MESSAGES, V["frames"]):
        sender, sctx, receiver, rctx = (
            (client, client_ctxs, server, server_ctxs) if direction == "C" else (server, server_ctxs, client, client_ctxs)
        )
        wire = sender.encode(sctx, message)
        assert wire.hex() == frame["frame"], frame["tag"]
        assert receiver.decode(rctx, wire) == message, frame["tag"]


def test_msgpack_encoding_matches_for_every_frame():
    for (_, message), frame in zip(MESSAGES, V["frames"]):
        assert JSONBinaryLayer().encode(None, message).hex() == frame["msgpack"], frame["tag"]


def test_failure_and_bad_subs_frames():
    assert JSONBinaryLayer().encode(None, []).hex() == V["handshake_fail"]
    bad = ["sub", "fail", [{"id": 0, "info": "DEBUG MODE: server rejected the request."}]]
    assert JSONBinaryLayer().encode(None, bad).hex() == V["bad_subs"]


def handshake_pair(client_key, server_key):
    client, server = default_pipeline(client_key), default_pipeline(server_key)
    pending, hello = client.client_hello()
    server_ctxs, reply = server.handshake(server.decode(None, hello))
    return client, client.client_handshake(pending, reply), server, server_ctxs


def test_without_an_auth_key_both_hellos_are_accepted():
    for client_key in (None, "any"):
        client, client_ctxs, server, server_ctxs = handshake_pair(client_key, None)
        # the agreed keys and streams work both ways
        assert server.decode(server_ctxs, client.encode(client_ctxs, ["rpc", "hello"])) == ["rpc", "hello"]
        assert client.decode(client_ctxs, server.encode(server_ctxs, ["rsp", client_key])) == ["rsp", client_key]


def test_with_an_auth_key_unsigned_or_wrongly_signed_hellos_are_refused():
    with pytest.raises(HandshakeError):
        handshake_pair(None, AUTH_KEY)
    with pytest.raises(HandshakeError, match="auth key"):
        handshake_pair("wrong", AUTH_KEY)


@pytest.mark.parametrize("hello", [[], [b""], [b"", b""], [b"", b"x" * 31], [b"", "text" * 8], "junk", [b"", b"\x00" * 32, b""]])
def test_malformed_hellos_are_refused(hello):
    server = default_pipeline(None)
    with pytest.raises(HandshakeError):
        server.handshake(hello)


def test_a_low_order_client_key_is_refused():
    server = default_pipeline(None)
    with pytest.raises(HandshakeError):
        server.handshake([b"", b"\x00" * 32])


def test_replayed_reordered_or_tampered_frames_fail_authentication():
    client, cctx, server, sctx = handshake_pair(AUTH_KEY, AUTH_KEY)
    first = client.encode(cctx, ["rpc", "a"])
    second = client.encode(cctx, ["rpc", "b"])
    with pytest.raises(ValueError, match="authentication"):
        server.decode(sctx, second)  # out of order

    client, cctx, server, sctx = handshake_pair(AUTH_KEY, AUTH_KEY)
    first = client.encode(cctx, ["rpc", "a"])
    assert server.decode(sctx, first) == ["rpc", "a"]
    with pytest.raises(ValueError):
        server.decode(sctx, first)  # replayed

    client, cctx, server, sctx = handshake_pair(AUTH_KEY, AUTH_KEY)
    tampered = bytearray(client.encode(cctx, ["rpc", "a"]))
    tampered[0] ^= 1
    with pytest.raises(ValueError):
        server.decode(sctx, bytes(tampered))
    with pytest.raises(ValueError, match="shorter"):
        server.decode(sctx, b"\x00" * 5)


def test_a_decompression_bomb_is_refused():
    layer = ZlibLayer(dictionary=b"x", max_inflated=1000)
    ctx, _ = layer.handshake(b"")
    peer = layer.client_handshake(None, b"x")
    bomb = peer.compressor.compress(b"\x00" * 100_000) + peer.compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(ValueError, match="inflates beyond"):
        layer.decode(ctx, bomb)


def test_jsonb_refuses_scalars_and_garbage():
    layer = JSONBinaryLayer()
    with pytest.raises(TypeError):
        layer.encode(None, "x")
    with pytest.raises(ValueError):
        layer.decode(None, msgpack.packb(5))
    for garbage in (b"\xc1\xc1", b"\x92\x01", b"\x91\x01\x02", b""):
        with pytest.raises(ValueError, match="undecodable|array or map"):
            layer.decode(None, garbage)


def test_layers_register_by_alias_and_build_from_config():
    class Reverse(MessageProcessLayer, alias="reverse_for_test"):
        handshake_required = False

        def encode(self, ctx, data):
            return data[::-1]

        def decode(self, ctx, data):
            return data[::-1]

    pipe = MessagePipeline.from_config([{"type": "JSONB"}, {"type": "reverse_for_test"}])
    wire = pipe.encode(None, ["rpc", "x"])
    assert wire == msgpack.packb(["rpc", "x"])[::-1]
    assert pipe.decode(None, wire) == ["rpc", "x"]
    with pytest.raises(NotImplementedError, match="unknown PACKET_LAYERS type"):
        MessageProcessLayerFactory.create(type="nope")


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("zdict", [b"", ZDICT])
def test_zlib_header_is_the_one_a_full_window_deflater_writes(level, zdict):
    from hetu.server.pipeline.zlib import zlib_header

    deflater = zlib.compressobj(level, zlib.DEFLATED, 15, 8, **({"zdict": zdict} if zdict else {}))
    stream = deflater.compress(b"x") + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert stream.startswith(zlib_header(15, level, zdict))


def test_a_server_deflates_with_a_small_window_that_a_full_window_inflater_reads():
    from hetu.server.pipeline.zlib import SERVER_DEFLATE_WBITS

    layer = ZlibLayer(level=1, dictionary=ZDICT)
    server_ctx, _ = layer.handshake(b"")
    inflater = zlib.decompressobj(15, zdict=ZDICT)  # what the reference's clients do
    rows = [dict(ROW1, id=i, text=f"message {i} " * (i % 7)) for i in range(400)]
    messages = [msgpack.packb(["updt", SUB_ID, {r["id"]: r}]) for r in rows]
    messages.append(msgpack.packb(["sub", SUB_ID, rows]))  # one message far longer than the window
    for message in messages:
        assert inflater.decompress(layer.encode(server_ctx, message)) == message
    assert len(messages[-1]) > 4 * 2**SERVER_DEFLATE_WBITS


def test_a_connection_holds_no_zlib_stream_until_a_message_goes_that_way():
    layer = ZlibLayer(level=1, dictionary=ZDICT)
    server_ctx, reply = layer.handshake(b"")
    client_ctx = ZlibLayer(level=1).client_handshake(None, reply)
    assert server_ctx._compressor is None and server_ctx._decompressor is None
    message = msgpack.packb(["rpc", "hello"])
    assert layer.decode(server_ctx, layer.encode(client_ctx, message)) == message
    assert server_ctx._decompressor is not None and server_ctx._compressor is None
