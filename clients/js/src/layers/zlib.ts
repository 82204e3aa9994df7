/**
 * `zlib`: one deflate stream per direction for the whole connection, each message
 * flushed with `Z_SYNC_FLUSH`, both directions primed with the preset dictionary the
 * server sends in its handshake reply.
 */

import { Deflate, Inflate, constants, type DeflateOptions } from "pako";
import { HandshakeError } from "../errors.js";
import type { Layer } from "../pipeline.js";

/** A message inflating beyond this is refused, like the server refuses one. */
export const MAX_INFLATED = 16 * 1024 * 1024;

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((size, chunk) => size + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** The two streams of one connection. */
export class ZlibContext {
  readonly dictionary: Uint8Array;
  private readonly deflater: Deflate;
  private readonly inflater: Inflate;
  private output: Uint8Array[] = [];
  private inflated = 0;

  constructor(dictionary: Uint8Array, level = 1, private readonly maxInflated = MAX_INFLATED) {
    this.dictionary = dictionary;
    const withDictionary = dictionary.length > 0 ? { dictionary } : {};
    this.deflater = new Deflate({ level: level as DeflateOptions["level"], ...withDictionary });
    this.inflater = new Inflate(withDictionary);
    // pako hands over each chunk it produces; the buffers are reused, so copy them.
    this.deflater.onData = (chunk) => this.output.push((chunk as Uint8Array).slice());
    this.inflater.onData = (chunk) => {
      this.inflated += (chunk as Uint8Array).length;
      if (this.inflated > this.maxInflated) throw new RangeError(`a message inflates beyond ${this.maxInflated} bytes`);
      this.output.push((chunk as Uint8Array).slice());
    };
  }

  compress(data: Uint8Array): Uint8Array {
    this.output = [];
    if (!this.deflater.push(data, constants.Z_SYNC_FLUSH) || this.deflater.err) {
      throw new Error(`compression failed: ${this.deflater.msg || this.deflater.err}`);
    }
    return concat(this.output);
  }

  decompress(data: Uint8Array): Uint8Array {
    this.output = [];
    this.inflated = 0;
    if (!this.inflater.push(data, constants.Z_SYNC_FLUSH) || this.inflater.err) {
      throw new Error(`a message does not inflate: ${this.inflater.msg || this.inflater.err}`);
    }
    return concat(this.output);
  }
}

export class ZlibLayer implements Layer<ZlibContext, null> {
  readonly alias = "zlib";
  readonly handshakeRequired = true;
  readonly level: number;

  constructor(options: { level?: number } = {}) {
    this.level = options.level ?? 1;
  }

  /** The server ignores the zlib hello: an empty `bin`. */
  clientHello(): { pending: null; hello: Uint8Array } {
    return { pending: null, hello: new Uint8Array(0) };
  }

  clientHandshake(_pending: null, reply: unknown): ZlibContext {
    if (!(reply instanceof Uint8Array)) throw new HandshakeError("the zlib handshake reply must be bytes");
    return new ZlibContext(reply, this.level);
  }

  encode(ctx: ZlibContext | null, data: unknown): unknown {
    return ctx === null ? data : ctx.compress(data as Uint8Array);
  }

  decode(ctx: ZlibContext | null, data: unknown): unknown {
    return ctx === null ? data : ctx.decompress(data as Uint8Array);
  }
}
