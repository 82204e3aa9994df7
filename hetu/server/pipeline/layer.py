"""The layer interface of the message pipeline, and the registry of layer types."""

from __future__ import annotations

from typing import Any, ClassVar


class HandshakeError(ValueError):
    """A hello or handshake reply is invalid: the connection cannot be set up."""


class MessageProcessLayer:
    """One step of the pipeline (serialisation, compression, encryption...).

    Subclasses register under an alias for ``PACKET_LAYERS``::

        class Rot13Layer(MessageProcessLayer, alias="rot13"):
            ...

    Layers that need per-connection state take part in the handshake: the client sends
    one hello per such layer, the server answers with one reply per layer, and both
    sides end up with a per-connection context that :meth:`encode`/:meth:`decode`
    receive. A ``None`` context means "no handshake yet": the data passes through.
    """

    registry: ClassVar[dict[str, type[MessageProcessLayer]]] = {}
    alias: ClassVar[str] = ""
    handshake_required: ClassVar[bool] = True

    def __init_subclass__(cls, alias: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if alias:
            cls.alias = alias.lower()
            MessageProcessLayer.registry[cls.alias] = cls

    # -- server side --------------------------------------------------------------------

    def handshake(self, client_hello: bytes) -> tuple[Any, bytes]:
        """Validate the client's hello; returns (connection context, reply bytes)."""
        return None, b""

    # -- client side ---------------------------------------------------------------------

    def client_hello(self) -> tuple[Any, bytes]:
        """(pending state, hello bytes) for the client's handshake message."""
        return None, b""

    def client_handshake(self, pending: Any, server_reply: bytes) -> Any:
        """The client's connection context from the server's reply."""
        return None

    # -- both -------------------------------------------------------------------------------

    def encode(self, ctx: Any, data: Any) -> Any:
        raise NotImplementedError

    def decode(self, ctx: Any, data: Any) -> Any:
        raise NotImplementedError


class MessageProcessLayerFactory:
    """Makes a layer from one ``PACKET_LAYERS`` entry (its ``type`` and keyword arguments)."""

    @staticmethod
    def create(type: str, **kwargs: Any) -> MessageProcessLayer:  # noqa: A002 - the config key
        cls = MessageProcessLayer.registry.get(str(type).lower())
        if cls is None:
            known = ", ".join(sorted(MessageProcessLayer.registry))
            raise NotImplementedError(f"unknown PACKET_LAYERS type {type!r}; known: {known}")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # unknown keyword or a value out of range
            raise ValueError(f"PACKET_LAYERS entry {{type: {type}}}: {exc}") from None
