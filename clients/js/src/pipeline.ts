/**
 * The message pipeline: layers applied in order to send (msgpack → zlib → crypto) and in
 * reverse to receive, as the server's `PACKET_LAYERS` list them.
 *
 * A layer that keeps per-connection state takes part in the handshake: the client sends
 * one hello per such layer (a msgpack array of `bin`), the server answers one reply per
 * layer, and each layer turns its reply into a connection context.
 *
 * ```ts
 * const pipeline = defaultPipeline("password123");
 * const { pending, message } = pipeline.clientHello();   // send `message` first
 * const wire = pipeline.clientHandshake(pending, reply); // `reply`: the server's first frame
 * socket.send(wire.encode(["rpc", "user_login", 1001, "Alice"]));
 * ```
 */

import { HandshakeError } from "./errors.js";
import { CryptoLayer } from "./layers/crypto.js";
import { MsgpackLayer } from "./layers/msgpack.js";
import { ZlibLayer } from "./layers/zlib.js";

/** One step of the pipeline. `ctx` is `null` before the handshake: data passes through. */
export interface Layer<Ctx = unknown, Pending = unknown> {
  /** The server's alias for the layer (`jsonb`, `zlib`, `crypto`). */
  readonly alias: string;
  /** Whether the layer sends a hello and receives a reply in the handshake. */
  readonly handshakeRequired: boolean;
  clientHello(): { pending: Pending; hello: Uint8Array };
  clientHandshake(pending: Pending, reply: unknown): Ctx;
  encode(ctx: Ctx | null, data: unknown): unknown;
  decode(ctx: Ctx | null, data: unknown): unknown;
}

/** The state a hello leaves until the server's reply arrives. */
export interface PendingHandshake {
  readonly states: unknown[];
}

/** A pipeline bound to one connection's contexts. */
export class ConnectionPipeline {
  constructor(
    private readonly layers: readonly Layer[],
    private readonly contexts: unknown[],
  ) {}

  /** A message (an array) to the bytes of one websocket frame. */
  encode(message: unknown): Uint8Array {
    let data: unknown = message;
    this.layers.forEach((layer, i) => {
      data = layer.encode(this.contexts[i], data);
    });
    return data as Uint8Array;
  }

  /** The bytes of one websocket frame back to a message. */
  decode(frame: Uint8Array): unknown {
    let data: unknown = frame;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      data = this.layers[i]!.decode(this.contexts[i], data);
    }
    return data;
  }
}

export class Pipeline {
  readonly layers: readonly Layer[];

  constructor(layers: readonly Layer[]) {
    this.layers = layers;
  }

  get handshakeLayers(): number {
    return this.layers.filter((layer) => layer.handshakeRequired).length;
  }

  private encodeWithoutContext(message: unknown): Uint8Array {
    return new ConnectionPipeline(this.layers, this.layers.map(() => null)).encode(message);
  }

  private decodeWithoutContext(frame: Uint8Array): unknown {
    return new ConnectionPipeline(this.layers, this.layers.map(() => null)).decode(frame);
  }

  /** The first message to send, and the state to finish the handshake with. */
  clientHello(): { pending: PendingHandshake; message: Uint8Array } {
    const states: unknown[] = [];
    const hellos: Uint8Array[] = [];
    for (const layer of this.layers) {
      if (!layer.handshakeRequired) {
        states.push(null);
        continue;
      }
      const { pending, hello } = layer.clientHello();
      states.push(pending);
      hellos.push(hello);
    }
    return { pending: { states }, message: this.encodeWithoutContext(hellos) };
  }

  /** The connection's pipeline, from the server's handshake reply (its first frame). */
  clientHandshake(pending: PendingHandshake, reply: Uint8Array): ConnectionPipeline {
    let replies: unknown;
    try {
      replies = this.decodeWithoutContext(reply);
    } catch (err) {
      throw new HandshakeError(`the server's handshake reply is unreadable: ${(err as Error).message}`);
    }
    if (!Array.isArray(replies) || replies.length !== this.handshakeLayers) {
      throw new HandshakeError(
        "the server refused the handshake: check the authKey, and that the server's PACKET_LAYERS " +
          "are jsonb, zlib and crypto (or pass a matching pipeline)",
      );
    }
    let next = 0;
    const contexts = this.layers.map((layer, i) =>
      layer.handshakeRequired ? layer.clientHandshake(pending.states[i], replies[next++]) : null,
    );
    return new ConnectionPipeline(this.layers, contexts);
  }
}

/** msgpack + zlib (level 1) + crypto: the layers of HeTu's default configuration. */
export function defaultPipeline(authKey?: string): Pipeline {
  return new Pipeline([new MsgpackLayer(), new ZlibLayer({ level: 1 }), new CryptoLayer({ authKey })]);
}
