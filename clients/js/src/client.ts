/**
 * The client connection: one websocket speaking the HeTu protocol.
 *
 * The protocol has no request ids: the server answers a connection's requests one at a
 * time, in order, so replies are matched to requests first-in first-out. `updt` pushes go
 * to the live subscription they belong to.
 *
 * ```ts
 * const client = await HeTuClient.connect("ws://127.0.0.1:2466/hetu/dev", { authKey: "password123" });
 * await client.call("user_login", 1001, "Alice");
 * const messages = await client.range("ChatMessage", "id", 0, MAX_INT64, { limit: 100 });
 * await client.close();
 * ```
 */

import { CallFailed, CallRejected, ConnectionClosed, HandshakeError } from "./errors.js";
import { LiveRange, LiveRow, type LiveSubscription, type Row, type SubscriptionOwner } from "./live.js";
import { defaultPipeline, type ConnectionPipeline, type PendingHandshake, type Pipeline } from "./pipeline.js";
import { ensureRandom } from "./random.js";
import { framePayload, OPEN, resolveWebSocket, type WebSocketConstructor, type WebSocketLike } from "./websocket.js";

/** The largest int64, the usual right bound of a range over ids. */
export const MAX_INT64 = (BigInt(1) << BigInt(63)) - BigInt(1);

/**
 * The lifecycle of a connection. Frames are sent only while `open`; a connection never
 * goes back to an earlier state.
 */
export type ConnState = "handshaking" | "open" | "closing" | "closed";

export interface ConnectOptions {
  /** The server's crypto `auth_key` (the signed `H2A1` hello). */
  authKey?: string | undefined;
  /** How long the websocket and the handshake may take; 10 000 ms by default. */
  timeoutMs?: number;
  /** The WebSocket class to use (default: `globalThis.WebSocket`, else the `ws` package). */
  WebSocket?: WebSocketConstructor | undefined;
  /** Layers matching the server's `PACKET_LAYERS`, when they differ from msgpack + zlib + crypto. */
  pipeline?: Pipeline | undefined;
}

export interface RangeOptions {
  /** At most this many rows (before the server's row permission filter); 10 by default, negative: no limit. */
  limit?: number;
  /** Descending index order. */
  desc?: boolean;
  /** Subscribe even when nothing matches yet (true by default); false answers `null` for an empty range. */
  force?: boolean;
}

/** Rows of unknown components: any component name, any field. */
export type AnyRows = Record<string, Row>;
/** The component names of a row map such as the `ComponentRows` that `hetu build` writes. */
export type ComponentName<Rows> = Extract<keyof Rows, string>;
/** The field names of one component. */
export type FieldName<Rows, K extends keyof Rows> = Extract<keyof Rows[K], string>;

/** The subscription calls a client and a session share (typed by the app's `ComponentRows`). */
export interface Subscriber<Rows extends object> {
  get<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, value: Rows[K][I],
  ): Promise<LiveRow<Rows[K]> | null>;
  range<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, left: Rows[K][I], right?: Rows[K][I] | null, options?: RangeOptions,
  ): Promise<LiveRange<Rows[K]> | null>;
}

type ReplyKind = "rpc" | "sub" | "motd";

interface Waiting {
  expects: ReplyKind;
  settle(frame: unknown[]): void;
  reject(err: Error): void;
}

const REPLY_KIND: Record<string, ReplyKind> = { rsp: "rpc", rej: "rpc", err: "rpc", sub: "sub", motd: "motd" };
const MAX_UNSOLICITED = 100;
const CLOSE_GRACE_MS = 2000;

function describe(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item));
  } catch {
    return String(value);
  }
}

export class HeTuClient<Rows extends object = AnyRows> implements SubscriptionOwner, Subscriber<Rows> {
  readonly url: string;
  /** Resolved when the connection has ended (never rejected). */
  readonly closed: Promise<void>;
  /** Frames that answered no request, e.g. the extra `["sub", "fail", …]` of a debug server. */
  readonly unsolicited: unknown[] = [];
  /** @internal sessions keep live subscriptions across connections */
  _endLiveOnClose = true;
  private stateValue: ConnState = "handshaking";
  private reason: string | null = null;
  private readonly ws: WebSocketLike;
  private readonly pipeline: Pipeline;
  private readonly hello: { pending: PendingHandshake; message: Uint8Array };
  private wire: ConnectionPipeline | null = null;
  private readonly waiting: Waiting[] = [];
  private readonly live = new Map<string, LiveSubscription<unknown>>();
  private readonly resolveClosed: () => void;
  private handshakeDone: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  private constructor(url: string, ws: WebSocketLike, pipeline: Pipeline) {
    this.url = url;
    this.ws = ws;
    this.pipeline = pipeline;
    this.hello = pipeline.clientHello();
    let resolveClosed!: () => void;
    this.closed = new Promise<void>((resolve) => {
      resolveClosed = resolve;
    });
    this.resolveClosed = resolveClosed;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.onOpen();
    ws.onmessage = (event) => this.onMessage(event.data);
    ws.onclose = (event) => {
      const detail = event.code === 1000 || event.code === undefined ? "" : ` (code ${event.code})`;
      this.finish(this.reason ?? `the server closed the connection${detail}`);
    };
    ws.onerror = () => {
      // a close event follows and ends the connection
    };
  }

  /**
   * Open `ws://host:port/hetu/<instance>` (or `wss://`) and do the handshake.
   *
   * Rejects with `ConnectionClosed` when the server cannot be reached or hangs up, and
   * with `HandshakeError` when it refuses the handshake (a wrong `authKey`).
   */
  static async connect<Rows extends object = AnyRows>(url: string, options: ConnectOptions = {}): Promise<HeTuClient<Rows>> {
    const WebSocketImpl = await resolveWebSocket(options.WebSocket);
    await ensureRandom();
    const pipeline = options.pipeline ?? defaultPipeline(options.authKey);
    const client = new HeTuClient<Rows>(url, new WebSocketImpl(url), pipeline);
    await client.handshake(options.timeoutMs ?? 10_000);
    return client;
  }

  /** Where the connection is in its lifecycle. */
  get state(): ConnState {
    return this.stateValue;
  }

  /** Whether requests can be sent. */
  get isOpen(): boolean {
    return this.stateValue === "open";
  }

  /** Why the connection ended, once it has. */
  get closeReason(): string | null {
    return this.stateValue === "closed" ? this.reason : null;
  }

  // -- lifecycle ---------------------------------------------------------------------------

  private handshake(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.handshakeDone = { resolve, reject };
      this.timer = setTimeout(() => {
        this.fail(new ConnectionClosed(`no handshake with ${this.url} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  private onOpen(): void {
    if (this.stateValue !== "handshaking") return;
    try {
      this.ws.send(this.hello.message);
    } catch (err) {
      this.fail(new ConnectionClosed(`cannot send the hello to ${this.url}: ${(err as Error).message}`));
    }
  }

  private onMessage(data: unknown): void {
    if (this.stateValue === "closed") return;
    let payload: Uint8Array | string;
    try {
      payload = framePayload(data);
    } catch (err) {
      this.fail(new ConnectionClosed((err as Error).message));
      return;
    }
    if (this.stateValue === "handshaking") {
      this.onHandshakeReply(payload);
    } else if (this.wire !== null) {
      this.onFrame(payload); // also while closing: replies to calls already sent
    }
  }

  private onHandshakeReply(payload: Uint8Array | string): void {
    if (typeof payload === "string") {
      this.fail(new HandshakeError("the server answered the hello with text: is this a HeTu server?"));
      return;
    }
    try {
      this.wire = this.pipeline.clientHandshake(this.hello.pending, payload);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.stateValue = "open";
    this.clearTimer();
    this.handshakeDone?.resolve();
    this.handshakeDone = null;
  }

  /** End the connection because of `err` (also the handshake's error, if it is still running). */
  private fail(err: Error): void {
    if (this.stateValue === "closed") return;
    this.reason = err.message;
    this.handshakeDone?.reject(err);
    this.handshakeDone = null;
    this.closeSocket();
    this.finish(err.message);
  }

  private closeSocket(): void {
    try {
      this.ws.close(1000);
    } catch {
      // already closing
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private finish(reason: string): void {
    if (this.stateValue === "closed") return;
    this.stateValue = "closed";
    this.reason ??= reason;
    this.clearTimer();
    if (this.handshakeDone !== null) {
      this.handshakeDone.reject(new ConnectionClosed(`the connection ended during the handshake: ${this.reason}`));
      this.handshakeDone = null;
    }
    const error = new ConnectionClosed(this.reason);
    for (const waiting of this.waiting.splice(0)) waiting.reject(error);
    if (this._endLiveOnClose) for (const live of this.live.values()) live._end();
    this.live.clear();
    this.resolveClosed();
  }

  /**
   * Close the connection; its live subscriptions end (a session's are kept for the next
   * connection). Calls still waiting reject with `ConnectionClosed`.
   */
  async close(): Promise<void> {
    if (this.stateValue === "handshaking" || this.stateValue === "open") {
      this.stateValue = "closing";
      this.reason = "the connection was closed by the client";
      this.closeSocket();
      this.clearTimer();
      // a server that never answers the close handshake does not hold the caller
      this.timer = setTimeout(() => {
        (this.ws as { terminate?: () => void }).terminate?.();
        this.finish("the connection was closed by the client");
      }, CLOSE_GRACE_MS);
    }
    await this.closed;
  }

  // -- frames --------------------------------------------------------------------------------

  private onFrame(payload: Uint8Array | string): void {
    let frame: unknown;
    if (typeof payload === "string") {
      frame = ["motd", payload]; // the motd reply is the only text frame
    } else {
      try {
        frame = this.wire!.decode(payload);
      } catch (err) {
        this.fail(new ConnectionClosed(`a frame from the server is unreadable: ${(err as Error).message}`));
        return;
      }
    }
    if (!Array.isArray(frame) || frame.length === 0) {
      this.keepUnsolicited(frame);
      return;
    }
    if (frame[0] === "updt") {
      this.routeUpdate(frame);
      return;
    }
    const head = this.waiting[0];
    if (head === undefined || head.expects !== REPLY_KIND[frame[0] as string]) {
      this.keepUnsolicited(frame);
      return;
    }
    this.waiting.shift();
    head.settle(frame);
  }

  private keepUnsolicited(frame: unknown): void {
    this.unsolicited.push(frame);
    if (this.unsolicited.length > MAX_UNSOLICITED) this.unsolicited.shift();
  }

  private routeUpdate(frame: unknown[]): void {
    const live = this.live.get(frame[1] as string);
    const delta = frame[2];
    // pushes for a subscription just unsubscribed may still arrive: nothing to update
    if (live !== undefined && delta !== null && typeof delta === "object") {
      live._apply(delta as Record<string, unknown>);
    }
  }

  private send(frame: unknown[]): void {
    if (this.stateValue !== "open") {
      throw new ConnectionClosed(this.stateValue === "handshaking" ? "the handshake is not done" : this.reason ?? "the connection is closed");
    }
    if (this.ws.readyState !== OPEN) {
      this.finish("the connection is closed");
      throw new ConnectionClosed(this.reason ?? "the connection is closed");
    }
    const data = this.wire!.encode(frame);
    try {
      this.ws.send(data);
    } catch (err) {
      // the frame used a nonce the server never saw: nothing after it could be read
      this.fail(new ConnectionClosed(`sending failed: ${(err as Error).message}`));
      throw new ConnectionClosed(this.reason ?? "the connection is closed");
    }
  }

  /**
   * Send `frame` and wait for its reply. `transform` runs as soon as the reply is read,
   * before any later frame, so a live subscription exists before the pushes behind its reply.
   */
  private request<T>(frame: unknown[], expects: ReplyKind, transform: (reply: unknown[]) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.send(frame);
      this.waiting.push({
        expects,
        reject,
        settle: (reply) => {
          try {
            resolve(transform(reply));
          } catch (err) {
            reject(err);
          }
        },
      });
    });
  }

  // -- calls -------------------------------------------------------------------------------------

  /**
   * Call an endpoint or system with positional arguments; resolves to its response
   * (`"ok"` when it returns no `ResponseToClient`).
   *
   * Rejects with `CallRejected` (a guard said no), `CallFailed` (debug-mode servers) or
   * `ConnectionClosed` (release-mode servers drop the connection of a failed call).
   */
  call<T = unknown>(name: string, ...args: unknown[]): Promise<T> {
    return this.request(["rpc", name, ...args], "rpc", (reply) => {
      if (reply[0] === "rej") throw new CallRejected(String(reply[1]), String(reply[2]));
      if (reply[0] === "err") throw new CallFailed(String(reply[1]), String(reply[2]));
      return reply[1] as T;
    });
  }

  /** The server's greeting text. */
  motd(): Promise<string> {
    return this.request(["motd"], "motd", (reply) => String(reply[1]));
  }

  // -- live subscriptions --------------------------------------------------------------------

  /**
   * Subscribe to the row whose `index` equals `value`; `null` when there is no such row
   * (or it may not be read). The subscription then follows that row by id.
   */
  get<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, value: Rows[K][I],
  ): Promise<LiveRow<Rows[K]> | null> {
    const request = ["sub", component, "get", index, value];
    return this._subscribeLive(request, (data) => new LiveRow<Rows[K]>(this, request, data));
  }

  /**
   * Subscribe to up to `limit` rows with `left <= index <= right` (`right` defaults to
   * `left`), ordered by `index`. A string bound may start with `(` (exclusive) or `[`.
   * `null` when the server keeps no subscription (no permission, or empty without `force`).
   */
  range<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, left: Rows[K][I], right?: Rows[K][I] | null, options: RangeOptions = {},
  ): Promise<LiveRange<Rows[K]> | null> {
    const { limit = 10, desc = false, force = true } = options;
    const request = ["sub", component, "range", index, left, right ?? null, limit, desc, force];
    return this._subscribeLive(request, (data) => new LiveRange<Rows[K]>(this, request, data));
  }

  /**
   * @internal Send a `sub` request; the reply makes the live object with `make`, or
   * refreshes `live` (a session restoring it on a new connection).
   */
  _subscribeLive<L extends LiveSubscription<unknown>>(
    request: unknown[], make: ((data: unknown) => L) | null, live: L | null = null,
  ): Promise<L | null> {
    return this.request(request, "sub", (reply) => {
      const subId = reply[1];
      const data = reply[2];
      if (subId === "fail") throw new CallFailed(String(request[1]), describe(data));
      if (subId === null || subId === undefined) {
        if (live !== null) {
          live.subId = null;
          live._replace(null);
        }
        return null;
      }
      const id = String(subId);
      const existing = this.live.get(id);
      if (existing !== undefined) return existing as L; // the server keeps one subscription per query
      let target: L;
      if (live !== null) {
        target = live;
        target._replace(data);
      } else {
        target = make!(data);
      }
      target.subId = id;
      this.live.set(id, target);
      return target;
    });
  }

  /** @internal `live.unsubscribe()` */
  async unsubscribeLive(live: LiveSubscription<unknown>): Promise<void> {
    if (live.subId !== null && this.live.get(live.subId) === live) {
      this.live.delete(live.subId);
      if (this.stateValue === "open") {
        try {
          this.send(["unsub", live.subId]);
        } catch (err) {
          if (!(err instanceof ConnectionClosed)) throw err;
        }
      }
    }
    live._end();
  }
}
