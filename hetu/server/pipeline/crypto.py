"""``crypto``: X25519 key exchange, BLAKE2b-256 session key, ChaCha20-Poly1305-IETF.

Nonces are a direction byte (``0x00`` server→client, ``0xFF`` client→server) followed by
an 11-byte big-endian message counter that starts at 1 in each direction. With an
``auth_key`` the client must send the signed ``H2A1`` hello (HMAC-SHA256 of its first 60
bytes keyed by the auth key).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings as sodium
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.exceptions import CryptoError

from .layer import HandshakeError, MessageProcessLayer

logger = logging.getLogger("HeTu.root")

MAGIC = b"H2A1"
KEY_LEN = 32
SIGNED_HELLO_LEN = 92  # magic 4 + public key 32 + timestamp 8 + nonce 16 + hmac 32
TAG_LEN = 16
SERVER_DIRECTION = 0x00
CLIENT_DIRECTION = 0xFF


@dataclass
class CryptoContext:
    """One connection's session key, directions and message counters (the nonces).

    The AEAD is OpenSSL's ChaCha20-Poly1305-IETF (``cryptography``): the same bytes as
    libsodium's, about 4x faster than it through PyNaCl for the small messages of a
    game (every frame of every connection goes through it)."""

    key: bytes
    send_direction: int
    recv_direction: int
    sent: int = 0
    received: int = 0
    aead: ChaCha20Poly1305 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.aead = ChaCha20Poly1305(self.key)


def session_key(private_key: bytes, peer_public: bytes) -> bytes:
    """The connection's 32-byte key: BLAKE2b of the X25519 shared secret."""
    try:
        shared = sodium.crypto_scalarmult(private_key, peer_public)
    except (CryptoError, ValueError, TypeError) as exc:
        raise HandshakeError(f"key exchange failed: {exc}") from None
    return hashlib.blake2b(shared, digest_size=32).digest()


def keypair() -> tuple[bytes, bytes]:
    """A new X25519 key pair, as (private, public)."""
    public, private = sodium.crypto_box_keypair()
    return private, public


def signed_hello(public_key: bytes, auth_key: str, nonce: bytes | None = None, timestamp: bytes = bytes(8)) -> bytes:
    """A client's crypto hello: magic, public key, timestamp and nonce, signed with an
    HMAC-SHA256 of the auth key."""
    payload = MAGIC + public_key + timestamp + (nonce if nonce is not None else os.urandom(16))
    return payload + hmac.new(auth_key.encode("utf-8"), payload, hashlib.sha256).digest()


def _nonce(direction: int, counter: int) -> bytes:
    return bytes([direction]) + counter.to_bytes(11, "big")


class CryptoLayer(MessageProcessLayer, alias="crypto"):
    """ChaCha20-Poly1305 per message with a key agreed by X25519 in the handshake (HeTu's
    ``crypto`` layer); with an ``auth_key`` the client's hello must be signed with it."""
    def __init__(self, auth_key: str | None = None) -> None:
        self.auth_key = auth_key or None
        self._warned = False

    def _client_public_key(self, hello: bytes) -> bytes:
        if not isinstance(hello, (bytes, bytearray)):
            raise HandshakeError("the crypto hello must be bytes")
        hello = bytes(hello)
        if len(hello) == SIGNED_HELLO_LEN and hello.startswith(MAGIC):
            if self.auth_key is not None:
                expected = hmac.new(self.auth_key.encode("utf-8"), hello[:60], hashlib.sha256).digest()
                if not hmac.compare_digest(expected, hello[60:]):
                    raise HandshakeError("the hello is not signed with this server's auth key")
            return hello[4:36]
        if len(hello) == KEY_LEN and self.auth_key is None:
            return hello
        raise HandshakeError("unknown crypto hello (wrong length, or unsigned while an auth key is set)")

    def handshake(self, client_hello: bytes) -> tuple[CryptoContext, bytes]:
        if self.auth_key is None and not self._warned:
            logger.warning("crypto layer without auth_key: any client key is accepted")
            self._warned = True
        client_public = self._client_public_key(client_hello)
        private, public = keypair()
        key = session_key(private, client_public)
        return CryptoContext(key, SERVER_DIRECTION, CLIENT_DIRECTION), public

    def client_hello(self) -> tuple[Any, bytes]:
        private, public = keypair()
        hello = signed_hello(public, self.auth_key) if self.auth_key else public
        return private, hello

    def client_handshake(self, pending: bytes, server_reply: bytes) -> CryptoContext:
        if not isinstance(server_reply, (bytes, bytearray)) or len(server_reply) != KEY_LEN:
            raise HandshakeError("the server's public key must be 32 bytes (is the auth key right?)")
        return CryptoContext(session_key(pending, bytes(server_reply)), CLIENT_DIRECTION, SERVER_DIRECTION)

    def encode(self, ctx: CryptoContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        ctx.sent += 1
        return ctx.aead.encrypt(_nonce(ctx.send_direction, ctx.sent), data, None)

    def decode(self, ctx: CryptoContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        if len(data) < TAG_LEN:
            raise ValueError("an encrypted message is shorter than its tag")
        ctx.received += 1
        try:
            return ctx.aead.decrypt(_nonce(ctx.recv_direction, ctx.received), bytes(data), None)
        except InvalidTag:
            raise ValueError("a message failed authentication (tampered, replayed or out of order)") from None
