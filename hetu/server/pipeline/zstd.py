"""``zstd``: one Zstandard stream per direction and connection, with a trained dictionary.

As in HeTu: the client's hello for this layer is empty (then the server answers with
the dictionary it trained for this worker, once, on sample ``updt`` frames of the
components clients may see) or a Zstandard dictionary of the client's own (then both
sides use that one for this connection, and the server answers with it). Each message
is compressed and flushed as one block of a frame that lasts the whole connection, so
every message also benefits from the ones before it.

Unlike HeTu, a client's dictionary is used for that connection only (HeTu made it the
worker's dictionary for every later connection too), the compression window is bounded
(``window_log``) so an open connection costs little memory, and what one message may
inflate to is bounded like the ``zlib`` layer's.
"""

from __future__ import annotations

import random
import string
import sys
from dataclasses import dataclass
from typing import Any

import msgpack

from .layer import HandshakeError, MessageProcessLayer
from .zlib import MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# A dictionary sent by a client: HeTu's are 1 KiB; anything far larger is refused.
MAX_CLIENT_DICTIONARY = 128 * 1024
# The largest window a peer's frames may use (the decoder allocates it): 4 MiB, above
# zstd's default for levels up to 9 on messages of this size.
MAX_PEER_WINDOW_LOG = 22
SAMPLES_PER_COMPONENT = 200
MIN_SAMPLES = 1000


@dataclass
class ZstdContext:
    """One connection's zstd state: its compressor and decompressor (sharing the negotiated
    dictionary) and the largest frame a message may inflate to."""
    compressor: Any
    decompressor: Any
    max_inflated: int


def _random_value(rng: random.Random, dt) -> Any:
    if dt.kind in ("i", "u"):
        return rng.randrange(0, 1 << min(62, dt.itemsize * 8 - 1))
    if dt.kind == "f":
        return rng.random() * 10 ** rng.randrange(0, 6)
    if dt.kind == "U":
        width = dt.itemsize // 4
        return "".join(rng.choices(string.ascii_letters, k=rng.randrange(0, min(width, 24) + 1)))
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, min(dt.itemsize, 24) + 1)))


def sample_frames(components, count: int = SAMPLES_PER_COMPONENT, seed: int | None = None) -> list[bytes]:
    """MessagePack ``updt`` frames with random rows of every non-ADMIN component.

    Values are random, so what the dictionary learns are the frames' shapes: the frame
    tag, subscription ids, component and field names.
    """
    from ...common.permission import Permission

    rng = random.Random(seed)
    samples = []
    for comp in components:
        if comp.permission_ == Permission.ADMIN:
            continue
        fields = [(name, dt) for name, dt in comp.dtype_map_.items() if name != "_version"]
        indexes = list(comp.indexes_) or ["id"]
        for _ in range(count):
            row = {name: _random_value(rng, dt) for name, dt in fields}
            index, limit = rng.choice(indexes), rng.randrange(1, 1025)
            if rng.random() < 0.3:
                sub_id = f"{comp.name_}.id[{row['id']}:None:1][:1]"
            else:
                sub_id = f"{comp.name_}.{index}[{rng.randrange(1 << 40)}:{rng.randrange(1 << 40)}:1][:{limit}]"
            samples.append(msgpack.packb(["updt", sub_id, {row["id"]: row}], use_bin_type=True))
    return samples


def train_dictionary(components, dict_size: int) -> bytes:
    """A Zstandard dictionary of at most ``dict_size`` bytes for ``components``' frames."""
    samples = sample_frames(components)
    filler = sample_frames(components or [], 1) or [b"\x93\xa4updt\xa8Comp.id\x80"]
    rng = random.Random(0)
    while len(samples) < MIN_SAMPLES:  # zstd's trainer needs enough samples
        base = rng.choice(filler)
        samples.append(base + rng.randbytes(rng.randrange(4, 32)))
    return zstd.train_dict(samples, dict_size).dict_content


class ZstdLayer(MessageProcessLayer, alias="zstd"):
    """Zstandard compression (HeTu's ``zstd`` layer).

    ``level`` (default 3) and ``dict_size`` (bytes, default 1024) are HeTu's; ours adds
    ``window_log`` (log2 of the compression window, default 17: 128 KiB, plenty for
    game messages and a small cost per connection), ``max_inflated`` (as in ``zlib``)
    and, for clients and tests, ``dictionary`` (a client sends it in its hello; a
    server uses it instead of training one). In ``PACKET_LAYERS``::

        - type: zstd
          level: 3
          dict_size: 1024
    """

    def __init__(self, level: int = 3, dict_size: int = 1024, window_log: int = 17,
                 max_inflated: int | None = None, dictionary: bytes | None = None) -> None:
        low, high = zstd.CompressionParameter.compression_level.bounds()
        if not isinstance(level, int) or not low <= level <= high:
            raise ValueError(f"zstd level must be an integer from {low} to {high}, not {level!r}")
        if not isinstance(dict_size, int) or dict_size < 256:
            raise ValueError(f"zstd dict_size must be an integer of at least 256 (bytes), not {dict_size!r}")
        low, high = zstd.CompressionParameter.window_log.bounds()
        if not isinstance(window_log, int) or not low <= window_log <= MAX_PEER_WINDOW_LOG:
            raise ValueError(f"zstd window_log must be an integer from {low} to {MAX_PEER_WINDOW_LOG}, "
                             f"not {window_log!r}")
        self.level = level
        self.dict_size = dict_size
        self.window_log = window_log
        self.max_inflated = max_inflated
        self.dictionary = dictionary

    def _context(self, content: bytes, max_inflated: int) -> ZstdContext:
        zdict = zstd.ZstdDict(content) if content else None
        compressor = zstd.ZstdCompressor(
            options={zstd.CompressionParameter.compression_level: self.level,
                     zstd.CompressionParameter.window_log: self.window_log},
            zstd_dict=zdict,
        )
        decompressor = zstd.ZstdDecompressor(
            zstd_dict=zdict, options={zstd.DecompressionParameter.window_log_max: MAX_PEER_WINDOW_LOG})
        return ZstdContext(compressor, decompressor, max_inflated)

    def server_dictionary(self) -> bytes:
        """This worker's dictionary, trained on the first handshake that needs it."""
        if self.dictionary is None:
            from ...system.definer import SystemClusters

            self.dictionary = train_dictionary(list(SystemClusters().get_components()), self.dict_size)
        return self.dictionary

    # -- server ------------------------------------------------------------------------

    def handshake(self, client_hello: bytes) -> tuple[ZstdContext, bytes]:
        if not isinstance(client_hello, (bytes, bytearray)):
            raise HandshakeError("the zstd hello must be bytes (empty, or a Zstandard dictionary)")
        if len(client_hello) > MAX_CLIENT_DICTIONARY:
            raise HandshakeError(f"the client's zstd dictionary is larger than {MAX_CLIENT_DICTIONARY} bytes")
        content = bytes(client_hello) or self.server_dictionary()
        try:
            ctx = self._context(content, self.max_inflated or MAX_CLIENT_MESSAGE)
        except (ValueError, zstd.ZstdError) as exc:
            raise HandshakeError(f"the client's zstd dictionary is invalid: {exc}") from None
        return ctx, content

    # -- client ------------------------------------------------------------------------

    def client_hello(self) -> tuple[Any, bytes]:
        return None, self.dictionary or b""

    def client_handshake(self, pending: Any, server_reply: bytes) -> ZstdContext:
        if not isinstance(server_reply, (bytes, bytearray)):
            raise HandshakeError("the zstd handshake reply must be bytes")
        try:
            return self._context(bytes(server_reply), self.max_inflated or MAX_SERVER_MESSAGE)
        except (ValueError, zstd.ZstdError) as exc:
            raise HandshakeError(f"the server's zstd dictionary is invalid: {exc}") from None

    # -- both --------------------------------------------------------------------------

    def encode(self, ctx: ZstdContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        return ctx.compressor.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    def decode(self, ctx: ZstdContext | None, data: bytes) -> bytes:
        if ctx is None:
            return data
        try:
            # one byte more than allowed tells "too large" from "exactly the limit"
            out = ctx.decompressor.decompress(data, ctx.max_inflated + 1)
        except (zstd.ZstdError, EOFError) as exc:
            raise ValueError(f"undecodable zstd data: {exc}") from None
        if len(out) > ctx.max_inflated:
            raise ValueError(f"a message inflates beyond {ctx.max_inflated} bytes")
        return out
