"""The message pipeline shared by the server and the Python client."""

from .brotli import BrotliLayer
from .crypto import CryptoLayer
from .jsonb import JSONBinaryLayer
from .layer import HandshakeError, MessageProcessLayer, MessageProcessLayerFactory
from .pipeline import MessagePipeline
from .zlib import ZlibLayer, build_dictionary
from .zstd import ZstdLayer

__all__ = [
    "BrotliLayer",
    "CryptoLayer",
    "HandshakeError",
    "JSONBinaryLayer",
    "MessagePipeline",
    "MessageProcessLayer",
    "MessageProcessLayerFactory",
    "ZlibLayer",
    "ZstdLayer",
    "build_dictionary",
]
