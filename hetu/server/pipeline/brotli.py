"""``brotli``: one Brotli stream per direction and connection.

As in HeTu: no dictionary is negotiated; the client's hello for this layer is ignored
and the server answers with empty bytes. Each message is compressed and flushed, so
the peer can decode it at once, while the stream keeps what came before as context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import brotli

from .layer import HandshakeError, MessageProcessLayer
from .zlib import MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE

MODES = {"GENERIC": brotli.MODE_GENERIC, "TEXT": brotli.MODE_TEXT, "FONT": brotli.MODE_FONT}


@dataclass
class BrotliContext:
    """One connection's Brotli state: its compressor and decompressor streams and the
    largest frame a message may inflate to."""
    compressor: Any
    decompressor: Any
    max_inflated: int


def _mode(mode: int | str) -> int:
    if isinstance(mode, str):
        name = mode.upper().removeprefix("MODE_")
        if name not in MODES:
            raise ValueError(f"brotli mode must be one of {', '.join(MODES)}, not {mode!r}")
        return MODES[name]
    if mode not in MODES.values():
        raise ValueError(f"brotli mode must be one of {', '.join(MODES)} (or {sorted(MODES.values())}), "
                         f"not {mode!r}")
    return mode


class BrotliLayer(MessageProcessLayer, alias="brotli"):
    """Brotli compression (HeTu's ``brotli`` layer), with HeTu's keyword arguments:
    ``quality`` 0-11 (default 3), ``lgwin`` 10-24 (default 22), ``lgblock`` 0 or
    16-24 (default 0: chosen by quality) and ``mode`` ``GENERIC`` (default), ``TEXT``
    or ``FONT`` (a name, or the ``brotli.MODE_*`` number); ours adds ``max_inflated``
    (as in ``zlib``). In ``PACKET_LAYERS``::

        - type: brotli
          quality: 3
          mode: GENERIC
    """

    def __init__(self, quality: int = 3, lgwin: int = 22, lgblock: int = 0, mode: int | str = "GENERIC",
                 max_inflated: int | None = None) -> None:
        if not isinstance(quality, int) or not 0 <= quality <= 11:
            raise ValueError(f"brotli quality must be an integer from 0 to 11, not {quality!r}")
        if not isinstance(lgwin, int) or not 10 <= lgwin <= 24:
            raise ValueError(f"brotli lgwin must be an integer from 10 to 24, not {lgwin!r}")
        if not isinstance(lgblock, int) or not (lgblock == 0 or 16 <= lgblock <= 24):
            raise ValueError(f"brotli lgblock must be 0 or an integer from 16 to 24, not {lgblock!r}")
        self.quality = quality
        self.lgwin = lgwin
        self.lgblock = lgblock
        self.mode = _mode(mode)
        self.max_inflated = max_inflated

    def _context(self, max_inflated: int) -> BrotliContext:
        compressor = brotli.Compressor(mode=self.mode, quality=self.quality, lgwin=self.lgwin, lgblock=self.lgblock)
        return BrotliContext(compressor, brotli.Decompressor(), max_inflated)

    def handshake(self, client_hello: bytes) -> tuple[BrotliContext, bytes]:
        return self._context(self.max_inflated or MAX_CLIENT_MESSAGE), b""

    def client_handshake(self, pending: Any, server_reply: bytes) -> BrotliContext:
        if not isinstance(server_reply, (bytes, bytearray)):
            raise HandshakeError("the brotli handshake reply must be bytes")
        return self._context(self.max_inflated or MAX_SERVER_MESSAGE)

    def encode(self, ctx: BrotliContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        return ctx.compressor.process(data) + ctx.compressor.flush()

    def decode(self, ctx: BrotliContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        try:
            # one byte more than allowed tells "too large" from "exactly the limit"
            out = ctx.decompressor.process(data, output_buffer_limit=ctx.max_inflated + 1)
        except brotli.error as exc:
            raise ValueError(f"undecodable brotli data: {exc}") from None
        if len(out) > ctx.max_inflated or not ctx.decompressor.can_accept_more_data():
            raise ValueError(f"a message inflates beyond {ctx.max_inflated} bytes")
        return out
