"""Errors raised by the client."""

from __future__ import annotations


class ConnectionClosed(Exception):
    """The connection ended (the server drops it on illegal or failed requests)."""


class HandshakeRefused(ConnectionClosed):
    """The server refused the handshake: the auth key differs from the server's
    ``crypto`` layer ``auth_key``, or the packet layers do not match."""


class CallRejected(Exception):
    """A guard rejected the call (``["rej", name, code]``)."""

    def __init__(self, name: str, code: str) -> None:
        super().__init__(f"{name} rejected: {code}")
        self.name = name
        self.code = code


class CallFailed(Exception):
    """The call or subscription failed (``["err", name, reason]`` or ``["sub", "fail", …]``,
    sent by debug-mode servers; release-mode servers close the connection instead)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} failed: {reason}")
        self.name = name
        self.reason = reason
