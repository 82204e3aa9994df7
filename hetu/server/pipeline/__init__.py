"""The message pipeline shared by the server and the Python client."""

from .crypto import CryptoLayer
from .jsonb import JSONBinaryLayer
from .layer import HandshakeError, MessageProcessLayer, MessageProcessLayerFactory
from .pipeline import MessagePipeline
from .zlib import ZlibLayer, build_dictionary

__all__ = [
    "CryptoLayer",
    "HandshakeError",
    "JSONBinaryLayer",
    "MessagePipeline",
    "MessageProcessLayer",
    "MessageProcessLayerFactory",
    "ZlibLayer",
    "build_dictionary",
]
