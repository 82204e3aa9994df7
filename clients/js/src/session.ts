/**
 * A client session that survives dropped connections.
 *
 * ```ts
 * const session = new HeTuSession(url, {
 *   authKey: "password123",
 *   onConnect: (client) => client.call("user_login", 1001, "Alice"), // on every (re)connection
 * });
 * await session.start();
 * const messages = await session.range("ChatMessage", "id", 0, MAX_INT64, { limit: 100 });
 * await session.call("user_chat", "hello");
 * ```
 *
 * When the connection drops, the session connects again with growing pauses, runs
 * `onConnect` (the login) and subscribes again to every live subscription it made. The
 * live objects stay the same: rows that changed meanwhile arrive as ordinary changes
 * (inserts, updates, deletes), so a view built from callbacks stays right.
 *
 * A call in flight when the connection dropped rejects with `ConnectionClosed` (it may or
 * may not have run: calls are not repeated behind the caller's back). Calls made while
 * the session reconnects wait for it, up to `callTimeoutMs`.
 */

import {
  HeTuClient, type AnyRows, type ComponentName, type ConnectOptions, type FieldName, type RangeOptions, type Subscriber,
} from "./client.js";
import { ConnectionClosed } from "./errors.js";
import type { LiveRange, LiveRow, LiveSubscription, SubscriptionOwner } from "./live.js";

export interface SessionOptions<Rows extends object = AnyRows> extends ConnectOptions {
  /** Runs on every new connection before anything else uses it: log in here. */
  onConnect?: (client: HeTuClient<Rows>) => unknown;
  /** First pause before reconnecting (jittered ±50 %), doubling up to `maxDelayMs`. Default 100. */
  minDelayMs?: number;
  /** Longest pause between reconnection attempts. Default 5000. */
  maxDelayMs?: number;
  /** How long calls wait for a reconnection before rejecting with `ConnectionClosed`. Default 30 000. */
  callTimeoutMs?: number;
}

/** A latch that can be waited for with a timeout. */
class Latch {
  private isSet = false;
  private readonly waiters = new Set<(set: boolean) => void>();

  get value(): boolean {
    return this.isSet;
  }

  set(): void {
    this.isSet = true;
    for (const wake of [...this.waiters]) wake(true);
  }

  clear(): void {
    this.isSet = false;
  }

  /** Wake every waiter with `false`. */
  release(): void {
    for (const wake of [...this.waiters]) wake(false);
  }

  /** True once set, false after `timeoutMs` or a release. */
  wait(timeoutMs: number): Promise<boolean> {
    if (this.isSet) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = (set: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(set);
      };
      const timer = setTimeout(() => wake(false), timeoutMs);
      this.waiters.add(wake);
    });
  }
}

export class HeTuSession<Rows extends object = AnyRows> implements SubscriptionOwner, Subscriber<Rows> {
  readonly url: string;
  /** The current connection (or the last one, while reconnecting). */
  client: HeTuClient<Rows> | null = null;
  /** How many connections were made. */
  connections = 0;
  private readonly options: SessionOptions<Rows>;
  private readonly subs: LiveSubscription<unknown>[] = [];
  private readonly ready = new Latch();
  private closing = false;
  private running = false;
  private wakeSleeper: (() => void) | null = null;

  constructor(url: string, options: SessionOptions<Rows> = {}) {
    this.url = url;
    this.options = options;
  }

  private get callTimeoutMs(): number {
    return this.options.callTimeoutMs ?? 30_000;
  }

  /** Connect and run `onConnect`; errors of this first attempt reject. */
  async start(): Promise<this> {
    if (this.closing) throw new ConnectionClosed("the session is closed");
    if (!this.running) {
      await this.connectOnce();
      this.running = true;
      void this.keepConnected();
    }
    return this;
  }

  /** Close for good; live subscriptions end and waiting calls reject. */
  async close(): Promise<void> {
    this.closing = true;
    this.wakeSleeper?.();
    this.ready.release();
    if (this.client !== null) await this.client.close();
    for (const live of this.subs.splice(0)) live._end();
  }

  /** Whether a connection is up and ready (logged in, subscriptions restored). */
  get connected(): boolean {
    return this.ready.value && this.client !== null && this.client.isOpen;
  }

  /** The current connection, waiting up to `timeoutMs` for a reconnection. */
  async waitConnected(timeoutMs: number = this.callTimeoutMs): Promise<HeTuClient<Rows>> {
    if (this.closing) throw new ConnectionClosed("the session is closed");
    if (this.client !== null && !this.client.isOpen) this.ready.clear(); // lost just now
    const ready = await this.ready.wait(timeoutMs);
    if (this.closing) throw new ConnectionClosed("the session is closed");
    if (!ready || this.client === null) throw new ConnectionClosed(`not connected to ${this.url} after ${timeoutMs} ms`);
    return this.client;
  }

  private async connectOnce(): Promise<void> {
    const client = await HeTuClient.connect<Rows>(this.url, this.options);
    client._endLiveOnClose = false; // they are restored on the next connection
    try {
      if (this.options.onConnect !== undefined) await this.options.onConnect(client);
      for (const live of [...this.subs]) {
        await client._subscribeLive(live._restoreRequest(), null, live);
      }
      if (this.closing) throw new ConnectionClosed("the session is closed");
    } catch (err) {
      await client.close();
      throw err;
    }
    this.client = client;
    this.connections += 1;
    this.ready.set();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeSleeper = done;
    });
  }

  private async keepConnected(): Promise<void> {
    while (!this.closing && this.client !== null) {
      await this.client.closed;
      if (this.closing) return;
      this.ready.clear();
      let delay = this.options.minDelayMs ?? 100;
      while (!this.closing) {
        await this.sleep(delay * (0.5 + Math.random()));
        if (this.closing) return;
        try {
          await this.connectOnce();
          break;
        } catch (err) {
          if (this.closing) return;
          console.warn(`hetu-client: reconnecting to ${this.url} failed: ${(err as Error).message}`);
          delay = Math.min(delay * 2, this.options.maxDelayMs ?? 5_000);
        }
      }
    }
  }

  // -- the client API, across reconnections -------------------------------------------------

  /** `HeTuClient.call` on the current connection (waiting for a reconnection). */
  async call<T = unknown>(name: string, ...args: unknown[]): Promise<T> {
    const client = await this.waitConnected();
    return client.call<T>(name, ...args);
  }

  async motd(): Promise<string> {
    return (await this.waitConnected()).motd();
  }

  /** A `LiveRow` restored after reconnections (`null` when there is no such row). */
  async get<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, value: Rows[K][I],
  ): Promise<LiveRow<Rows[K]> | null> {
    const client = await this.waitConnected();
    return this.track(await client.get(component, index, value));
  }

  /** A `LiveRange` restored after reconnections. */
  async range<K extends ComponentName<Rows>, I extends FieldName<Rows, K>>(
    component: K, index: I, left: Rows[K][I], right?: Rows[K][I] | null, options?: RangeOptions,
  ): Promise<LiveRange<Rows[K]> | null> {
    const client = await this.waitConnected();
    return this.track(await client.range(component, index, left, right, options));
  }

  private track<L extends LiveSubscription<unknown> | null>(live: L): L {
    if (live !== null && !this.subs.includes(live)) {
      live._owner = this;
      this.subs.push(live);
    }
    return live;
  }

  /** @internal `live.unsubscribe()` */
  async unsubscribeLive(live: LiveSubscription<unknown>): Promise<void> {
    const at = this.subs.indexOf(live);
    if (at >= 0) this.subs.splice(at, 1);
    if (this.client !== null && this.client.isOpen) await this.client.unsubscribeLive(live);
    live._end();
  }
}
