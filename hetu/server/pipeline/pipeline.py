"""The message pipeline: layers applied in order to send, in reverse to receive."""

from __future__ import annotations

from typing import Any

from .layer import HandshakeError, MessageProcessLayer, MessageProcessLayerFactory


class MessagePipeline:
    """An ordered list of layers (e.g. jsonb → zlib → crypto) and the handshake.

    The server calls :meth:`handshake` with the client's first message; a client calls
    :meth:`client_hello` then :meth:`client_handshake`. Both get one context per layer
    to pass to :meth:`encode` / :meth:`decode`.
    """

    def __init__(self, layers: list[MessageProcessLayer] | None = None) -> None:
        self.layers: list[MessageProcessLayer] = list(layers or [])

    @classmethod
    def from_config(cls, packet_layers: list[dict] | None) -> MessagePipeline:
        """From ``PACKET_LAYERS``: ``[{type: jsonb}, {type: zlib, level: 1}, ...]``."""
        layers = []
        for entry in packet_layers or []:
            entry = dict(entry)
            layers.append(MessageProcessLayerFactory.create(**entry))
        return cls(layers)

    def add_layer(self, layer: MessageProcessLayer) -> None:
        self.layers.append(layer)

    @property
    def num_handshake_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.handshake_required)

    def no_context(self) -> list:
        return [None] * len(self.layers)

    def encode(self, ctxs: list | None, message: Any) -> bytes:
        ctxs = ctxs or self.no_context()
        data = message
        for layer, ctx in zip(self.layers, ctxs):
            data = layer.encode(ctx, data)
        return data

    def decode(self, ctxs: list | None, data: bytes) -> Any:
        ctxs = ctxs or self.no_context()
        for layer, ctx in zip(reversed(self.layers), reversed(ctxs)):
            data = layer.decode(ctx, data)
        return data

    # -- handshake ----------------------------------------------------------------------------

    def handshake(self, hello: Any) -> tuple[list, bytes]:
        """Server side: the decoded hello (one entry per handshake layer) → (contexts,
        encoded reply)."""
        if not isinstance(hello, list) or len(hello) != self.num_handshake_layers:
            raise HandshakeError(
                f"the hello must list {self.num_handshake_layers} layer hellos, got {hello!r:.80}"
            )
        ctxs, replies = [], []
        entries = iter(hello)
        for layer in self.layers:
            if not layer.handshake_required:
                ctxs.append(None)
                continue
            ctx, reply = layer.handshake(next(entries))
            ctxs.append(ctx)
            replies.append(reply)
        return ctxs, self.encode(None, replies)

    def client_hello(self) -> tuple[list, bytes]:
        """Client side: (pending state per layer, encoded hello message)."""
        pending, hellos = [], []
        for layer in self.layers:
            if not layer.handshake_required:
                pending.append(None)
                continue
            state, hello = layer.client_hello()
            pending.append(state)
            hellos.append(hello)
        return pending, self.encode(None, hellos)

    def client_handshake(self, pending: list, reply: bytes) -> list:
        """Client side: contexts from the server's (encoded) handshake reply."""
        replies = self.decode(None, reply)
        if not isinstance(replies, list) or len(replies) != self.num_handshake_layers:
            raise HandshakeError("the server refused the handshake (or speaks another pipeline)")
        ctxs = []
        entries = iter(replies)
        for layer, state in zip(self.layers, pending):
            ctxs.append(layer.client_handshake(state, next(entries)) if layer.handshake_required else None)
        return ctxs
