"""``zlib``: one deflate stream per direction and connection, with a preset dictionary.

The dictionary (component and field names the clients may see) is sent to the client
in the handshake reply; both directions use it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from .layer import HandshakeError, MessageProcessLayer

# The largest message one side accepts once inflated. A few KiB of deflate inflate to
# MiBs, and MessagePack turns each byte of e.g. empty arrays into a 64-byte Python
# object, so what a server accepts from a client is bounded like a websocket frame
# (Sanic's default WEBSOCKET_MAX_SIZE); a client accepts larger server messages (the
# initial rows of a big range subscription).
MAX_CLIENT_MESSAGE = 1024 * 1024
MAX_SERVER_MESSAGE = 16 * 1024 * 1024
# Compressor memory per connection: zlib's default (8) costs about 100 KiB for every
# open connection; 4 costs about a quarter of that. The stream stays standard deflate
# (any inflater reads it), only slightly larger.
MEM_LEVEL = 4
# A server holds a compressor per client, so it deflates with a 2 KiB window (2**11)
# and memLevel 2: about 17 KiB less per connection than 2**15 and 4. HeTu's messages
# (updates of a few hundred bytes with repeating field names) compress as well; the
# rows of a large subscription come out about 5 % larger. The stream still says
# "32 KiB window" in its zlib header (a raw deflate stream behind the header a 2**15
# deflater writes), so a server's frames are byte for byte the reference's while no
# match reaches further back than 2 KiB; every inflater reads it. Inflating keeps the
# full window clients deflate with.
SERVER_DEFLATE_WBITS = 11
SERVER_MEM_LEVEL = 2


def build_dictionary(components) -> bytes:
    """The preset dictionary: ``updt`` plus the names and field names of every
    non-ADMIN component, sorted, joined by newlines."""
    from ...common.permission import Permission

    words = {"updt"}
    for comp in components:
        if comp.permission_ == Permission.ADMIN:
            continue
        words.add(comp.name_)
        words.update(comp.dtype_map_)
    return "\n".join(sorted(words)).encode("utf-8")


def zlib_header(wbits: int, level: int, zdict: bytes | None) -> bytes:
    """The 2-byte zlib stream header (RFC 1950) a deflater with ``wbits`` and ``level``
    writes, followed by the dictionary id when there is a preset dictionary."""
    cmf = (wbits - 8) << 4 | zlib.DEFLATED
    if level < 0:
        level = 6
    flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3
    flg = flevel << 6 | (0x20 if zdict else 0)
    flg |= 31 - (cmf << 8 | flg) % 31
    header = bytes([cmf, flg])
    return header + zlib.adler32(zdict).to_bytes(4, "big") if zdict else header


class ZlibContext:
    """The deflate stream (``compressor``) and the inflate stream (``decompressor``) of
    one connection. Each is made on first use from its factory, so a connection holds
    no zlib state for a direction no message went in yet (an idle connection none:
    about 18 KiB on a server)."""

    def __init__(self, compressor: Any = None, decompressor: Any = None,
                 max_inflated: int = MAX_SERVER_MESSAGE, header: bytes = b"",
                 make_compressor: Callable[[], Any] | None = None,
                 make_decompressor: Callable[[], Any] | None = None) -> None:
        self._compressor = compressor
        self._decompressor = decompressor
        self._make_compressor = make_compressor
        self._make_decompressor = make_decompressor
        self.max_inflated = max_inflated
        self.header = header  # written before the first compressed message (raw deflate)

    @property
    def compressor(self) -> Any:
        if self._compressor is None:
            self._compressor = self._make_compressor()
        return self._compressor

    @property
    def decompressor(self) -> Any:
        if self._decompressor is None:
            self._decompressor = self._make_decompressor()
        return self._decompressor


class ZlibLayer(MessageProcessLayer, alias="zlib"):
    """``max_inflated``: the largest message this side accepts once inflated (a larger
    one is undecodable, so a server drops the connection); by default
    ``MAX_CLIENT_MESSAGE`` on a server, ``MAX_SERVER_MESSAGE`` on a client. In
    ``PACKET_LAYERS``: ``{type: zlib, level: 1, max_inflated: 4194304}``."""

    def __init__(self, level: int = 1, wbits: int = zlib.MAX_WBITS, dictionary: bytes | None = None,
                 max_inflated: int | None = None) -> None:
        self.level = level
        self.wbits = wbits
        self.dictionary = dictionary
        self.max_inflated = max_inflated

    def _context(self, zdict: bytes, max_inflated: int, deflate_wbits: int | None = None,
                 mem_level: int = MEM_LEVEL) -> ZlibContext:
        """Streams made on first use; ``deflate_wbits`` < 0: raw deflate (see
        SERVER_DEFLATE_WBITS)."""
        with_dict = {"zdict": zdict} if zdict else {}
        wbits, level = self.wbits, self.level
        deflate_wbits = wbits if deflate_wbits is None else deflate_wbits
        return ZlibContext(
            max_inflated=max_inflated,
            make_compressor=lambda: zlib.compressobj(level, zlib.DEFLATED, deflate_wbits, mem_level, **with_dict),
            make_decompressor=lambda: zlib.decompressobj(wbits, **with_dict),
        )

    def server_dictionary(self) -> bytes:
        if self.dictionary is None:
            from ...system.definer import SystemClusters

            self.dictionary = build_dictionary(SystemClusters().get_components())
        return self.dictionary

    def handshake(self, client_hello: bytes) -> tuple[ZlibContext, bytes]:
        zdict = self.server_dictionary()
        max_inflated = self.max_inflated or MAX_CLIENT_MESSAGE
        if self.wbits <= SERVER_DEFLATE_WBITS:
            return self._context(zdict, max_inflated), zdict
        ctx = self._context(zdict, max_inflated, -SERVER_DEFLATE_WBITS, SERVER_MEM_LEVEL)
        ctx.header = zlib_header(self.wbits, self.level, zdict)
        return ctx, zdict

    def client_handshake(self, pending: Any, server_reply: bytes) -> ZlibContext:
        if not isinstance(server_reply, (bytes, bytearray)):
            raise HandshakeError("the zlib handshake reply must be bytes")
        return self._context(bytes(server_reply), self.max_inflated or MAX_SERVER_MESSAGE)

    def encode(self, ctx: ZlibContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        out = ctx.compressor.compress(data) + ctx.compressor.flush(zlib.Z_SYNC_FLUSH)
        if ctx.header:
            out, ctx.header = ctx.header + out, b""
        return out

    def decode(self, ctx: ZlibContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        out = ctx.decompressor.decompress(data, ctx.max_inflated)
        if ctx.decompressor.unconsumed_tail:
            raise ValueError(f"a message inflates beyond {ctx.max_inflated} bytes")
        return out
