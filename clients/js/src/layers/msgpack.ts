/**
 * `jsonb`: MessagePack (the name is the reference server's). Integers follow the policy
 * of `int64.ts`; `bin` arrives as `Uint8Array`; maps arrive as plain objects, their
 * integer keys as decimal strings.
 */

import { Decoder, Encoder } from "@msgpack/msgpack";
import { normalizeDecoded, prepareForEncoding } from "../int64.js";
import type { Layer } from "../pipeline.js";

// Keys of `updt` maps are row ids: a 64-bit key becomes its exact decimal string, as a
// smaller integer key would become once stored as a property name.
function mapKey(key: unknown): string | number {
  if (typeof key === "string" || typeof key === "number") return key;
  if (typeof key === "bigint") return key.toString();
  throw new TypeError(`a map key of type ${typeof key} cannot be a property name`);
}

export class MsgpackLayer implements Layer<null, null> {
  readonly alias = "jsonb";
  readonly handshakeRequired = false;
  private readonly encoder = new Encoder({ useBigInt64: true });
  private readonly decoder = new Decoder({ useBigInt64: true, mapKeyConverter: mapKey });

  clientHello(): never {
    throw new Error("the msgpack layer has no handshake");
  }

  clientHandshake(): null {
    return null;
  }

  encode(_ctx: null, message: unknown): Uint8Array {
    if (typeof message !== "object" || message === null) {
      throw new TypeError(`a message must be an array or an object, got ${typeof message}`);
    }
    return this.encoder.encode(prepareForEncoding(message));
  }

  decode(_ctx: null, data: unknown): unknown {
    const value = this.decoder.decode(data as Uint8Array);
    if (typeof value !== "object" || value === null || value instanceof Uint8Array) {
      throw new TypeError("a message must be a msgpack array or map");
    }
    return normalizeDecoded(value);
  }
}
