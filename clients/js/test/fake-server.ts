// An in-memory HeTu server for the unit tests: the server side of the handshake and the
// pipeline, built from the client's own layers with the directions swapped, behind a
// fake WebSocket class that tests hand to the client.

import { x25519 } from "@noble/curves/ed25519.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { CryptoContext, CLIENT_DIRECTION, CryptoLayer, SERVER_DIRECTION, sessionKey } from "../src/layers/crypto.js";
import { MsgpackLayer } from "../src/layers/msgpack.js";
import { ZlibContext, ZlibLayer } from "../src/layers/zlib.js";
import { ConnectionPipeline } from "../src/pipeline.js";
import type { WebSocketConstructor, WebSocketLike } from "../src/websocket.js";

export const DICTIONARY = new TextEncoder().encode("Hero\n_version\nhp\nid\nname\nowner\nupdt");

const msgpack = new MsgpackLayer();

/** One accepted connection, from the server's side. */
export class FakeConnection {
  readonly received: unknown[][] = [];
  private wire: ConnectionPipeline | null = null;

  constructor(readonly server: FakeServer, readonly socket: FakeSocket) {}

  /** The client's hello arrived: answer it as the server would. */
  handshake(hello: Uint8Array): void {
    if (this.server.silent) return;
    const [, cryptoHello] = msgpack.decode(null, hello) as Uint8Array[];
    const signed = cryptoHello!.length === 92;
    const clientPublic = signed ? cryptoHello!.subarray(4, 36) : cryptoHello!;
    const authKey = this.server.authKey;
    const signatureOk =
      signed &&
      authKey !== undefined &&
      Buffer.from(hmac(sha256, new TextEncoder().encode(authKey), cryptoHello!.subarray(0, 60))).equals(
        Buffer.from(cryptoHello!.subarray(60)),
      );
    if (authKey !== undefined && !signatureOk) {
      this.socket.deliver(Uint8Array.of(0x90));
      this.socket.drop();
      return;
    }
    const serverPrivate = x25519.utils.randomPrivateKey();
    const key = sessionKey(serverPrivate, clientPublic);
    this.wire = new ConnectionPipeline(
      [new MsgpackLayer(), new ZlibLayer(), new CryptoLayer()],
      [null, new ZlibContext(DICTIONARY), new CryptoContext(key, SERVER_DIRECTION, CLIENT_DIRECTION)],
    );
    this.socket.deliver(msgpack.encode(null, [DICTIONARY, x25519.getPublicKey(serverPrivate)]));
  }

  receive(frame: Uint8Array): void {
    const message = this.wire!.decode(frame) as unknown[];
    this.received.push(message);
    this.server.onMessage(message, this);
  }

  /** Send a message through the pipeline. */
  push(message: unknown[]): void {
    this.socket.deliver(this.wire!.encode(message));
  }

  /** Send raw bytes (e.g. a tampered frame). */
  pushRaw(frame: Uint8Array): void {
    this.socket.deliver(frame);
  }

  encode(message: unknown[]): Uint8Array {
    return this.wire!.encode(message);
  }
}

/** A WebSocket whose other end is a FakeServer. */
export class FakeSocket implements WebSocketLike {
  binaryType = "blob";
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private connection: FakeConnection | null = null;
  private helloSeen = false;

  constructor(readonly server: FakeServer, readonly url: string) {
    setTimeout(() => {
      if (!server.accepting) {
        this.readyState = 3;
        this.onerror?.({});
        this.onclose?.({ code: 1006 });
        return;
      }
      this.readyState = 1;
      this.connection = new FakeConnection(server, this);
      server.connections.push(this.connection);
      this.onopen?.({});
    }, 0);
  }

  send(data: Uint8Array | ArrayBuffer | string): void {
    if (this.readyState !== 1) throw new Error("socket not open");
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data as ArrayBuffer).slice();
    setTimeout(() => {
      if (this.readyState !== 1 || this.connection === null) return;
      if (!this.helloSeen) {
        this.helloSeen = true;
        this.connection.handshake(bytes);
      } else {
        this.connection.receive(bytes);
      }
    }, 0);
  }

  /** The server sends a frame (bytes, or text). */
  deliver(data: Uint8Array | string): void {
    const payload = typeof data === "string" ? data : data.slice().buffer;
    setTimeout(() => {
      if (this.readyState === 1) this.onmessage?.({ data: payload });
    }, 0);
  }

  close(code = 1000): void {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    setTimeout(() => {
      this.readyState = 3;
      this.onclose?.({ code });
    }, 0);
  }

  /** The server drops the TCP connection without a close frame. */
  drop(): void {
    setTimeout(() => {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code: 1006 });
    }, 0);
  }
}

export class FakeServer {
  readonly connections: FakeConnection[] = [];
  /** New sockets fail to connect while false (a server that is down). */
  accepting = true;
  /** Never answer the hello. */
  silent = false;
  readonly WebSocket: WebSocketConstructor;

  constructor(
    readonly onMessage: (message: unknown[], connection: FakeConnection) => void = () => {},
    readonly authKey?: string,
  ) {
    const server = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string) {
        super(server, url);
      }
    };
  }

  get last(): FakeConnection {
    return this.connections[this.connections.length - 1]!;
  }

  /** Drop every open connection. */
  dropAll(): void {
    for (const connection of this.connections) connection.socket.drop();
  }
}

/** Resolve once `predicate` holds (checked every few ms), or fail after `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
