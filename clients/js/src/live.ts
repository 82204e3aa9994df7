/**
 * Live subscriptions: the rows a subscription covers, kept current by the server's pushes.
 *
 * A `LiveRow` (`client.get`) holds one row, a `LiveRange` (`client.range`) the rows of an
 * index range. Each push becomes `Change` events (insert, update, delete) delivered to
 * the callbacks and to every `for await` loop over the subscription:
 *
 * ```ts
 * const messages = await client.range("ChatMessage", "id", 0, MAX_INT64, { limit: 100 });
 * const stop = messages.onInsert((row) => console.log(row.text));
 * for await (const change of messages) console.log(change.kind, change.id, change.row);
 * ```
 */

import { compareValues, int64, type Int64 } from "./int64.js";

/** A row as the server sends it: field name → value, `id` included. */
export type Row = Record<string, unknown>;

export type ChangeKind = "insert" | "update" | "delete";

/** One row entering, changing in or leaving a subscription. */
export interface Change<R = Row> {
  readonly kind: ChangeKind;
  readonly id: Int64;
  /** The row now; `null` when deleted. */
  readonly row: R | null;
  /** The row before; `null` when inserted. */
  readonly old: R | null;
}

/** Who can end a subscription on the server: a client or a session. */
export interface SubscriptionOwner {
  unsubscribeLive(live: LiveSubscription<unknown>): Promise<void>;
}

/** Report an exception thrown by user code without disturbing the pushes. */
export function reportCallbackError(what: string, err: unknown): void {
  console.error(`hetu-client: ${what} failed:`, err);
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && a.every((byte, i) => byte === b[i]);
  }
  return typeof a === "number" && typeof b === "number" && Number.isNaN(a) && Number.isNaN(b);
}

function sameRow(a: object, b: object): boolean {
  const left = a as Row;
  const right = b as Row;
  const keys = Object.keys(left);
  return keys.length === Object.keys(right).length && keys.every((key) => key in right && sameValue(left[key], right[key]));
}

/** The row as pushed: `_version` (sent only in a get-by-id reply) is dropped. */
function cleanRow<R>(row: unknown): R {
  const record = row as Row;
  if ("_version" in record) delete record._version;
  return record as R;
}

function rowId(row: object): Int64 {
  return int64((row as Row).id as number | bigint);
}

/** Changes waiting for one `for await` loop. */
class ChangeQueue {
  private readonly items: Change<unknown>[] = [];
  private waiter: ((result: IteratorResult<Change<unknown>>) => void) | null = null;
  private ended = false;

  push(change: Change<unknown>): void {
    if (this.waiter !== null) {
      const wake = this.waiter;
      this.waiter = null;
      wake({ value: change, done: false });
    } else {
      this.items.push(change);
    }
  }

  end(): void {
    this.ended = true;
    if (this.waiter !== null) {
      const wake = this.waiter;
      this.waiter = null;
      wake({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<Change<unknown>>> {
    const change = this.items.shift();
    if (change !== undefined) return Promise.resolve({ value: change, done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

// Stored without the row type, so that a LiveRow<Hero> is also a LiveSubscription<unknown>.
type Callback = (...args: never[]) => unknown;

/** What `LiveRow` and `LiveRange` share. */
export abstract class LiveSubscription<R = Row> implements AsyncIterable<Change<R>> {
  /** The component subscribed to. */
  readonly component: string;
  /** The server's id of the subscription; `null` once the server no longer has one. */
  subId: string | null = null;
  /** True once unsubscribed or its connection ended (sessions keep theirs across reconnects). */
  closed = false;
  /** @internal the `sub` frame that made it */
  readonly _request: unknown[];
  /** @internal the client or session that can unsubscribe it */
  _owner: SubscriptionOwner;
  private readonly callbacks: Record<ChangeKind, Set<Callback>> = { insert: new Set(), update: new Set(), delete: new Set() };
  private readonly queues = new Set<ChangeQueue>();

  protected constructor(owner: SubscriptionOwner, request: unknown[]) {
    this._owner = owner;
    this._request = request;
    this.component = request[1] as string;
  }

  /** Call `callback(row)` for every row that enters. Returns a function that removes it. */
  onInsert(callback: (row: R) => unknown): () => void {
    this.callbacks.insert.add(callback);
    return () => this.callbacks.insert.delete(callback);
  }

  /** Call `callback(row, old)` for every row that changes. Returns a function that removes it. */
  onUpdate(callback: (row: R, old: R) => unknown): () => void {
    this.callbacks.update.add(callback);
    return () => this.callbacks.update.delete(callback);
  }

  /**
   * Call `callback(old)` for every row that is deleted, leaves the range or becomes
   * unreadable. Returns a function that removes it.
   */
  onDelete(callback: (old: R) => unknown): () => void {
    this.callbacks.delete.add(callback);
    return () => this.callbacks.delete.delete(callback);
  }

  /** Every change from the moment the loop starts until the subscription ends. */
  [Symbol.asyncIterator](): AsyncIterator<Change<R>> {
    const queue = new ChangeQueue();
    if (this.closed) queue.end();
    else this.queues.add(queue);
    return {
      next: () => queue.next() as Promise<IteratorResult<Change<R>>>,
      return: async () => {
        this.queues.delete(queue);
        queue.end();
        return { value: undefined, done: true };
      },
    };
  }

  /** Stop the pushes (`unsub`); loops over the subscription end. */
  async unsubscribe(): Promise<void> {
    await this._owner.unsubscribeLive(this as unknown as LiveSubscription<unknown>);
  }

  /** The current rows (in index order for a range). */
  abstract rowsList(): R[];

  /** @internal apply an `updt` push: row id (decimal string) → row or null */
  abstract _apply(delta: Record<string, unknown>): void;

  /** @internal take a fresh initial result (after a reconnect), emitting the differences */
  abstract _replace(data: unknown): void;

  /** @internal the `sub` frame that subscribes again after a reconnect */
  _restoreRequest(): unknown[] {
    return this._request;
  }

  /** @internal */
  _end(): void {
    this.closed = true;
    for (const queue of this.queues) queue.end();
    this.queues.clear();
  }

  protected emit(change: Change<R>): void {
    const run = (callback: Callback, args: unknown[]) => {
      try {
        const result = (callback as (...values: unknown[]) => unknown)(...args);
        if (result instanceof Promise) {
          result.catch((err: unknown) => reportCallbackError(`${change.kind} callback of ${this.subId}`, err));
        }
      } catch (err) {
        reportCallbackError(`${change.kind} callback of ${this.subId}`, err);
      }
    };
    const args = { insert: [change.row], update: [change.row, change.old], delete: [change.old] }[change.kind];
    for (const callback of [...this.callbacks[change.kind]]) run(callback, args);
    for (const queue of this.queues) queue.push(change);
  }
}

/** One row (`client.get`); `row` is `null` once it is deleted or unreadable. */
export class LiveRow<R = Row> extends LiveSubscription<R> {
  row: R | null;

  /** @internal */
  constructor(owner: SubscriptionOwner, request: unknown[], row: unknown) {
    super(owner, request);
    this.row = row === null || row === undefined ? null : cleanRow<R>(row);
  }

  rowsList(): R[] {
    return this.row === null ? [] : [this.row];
  }

  private set(id: Int64, row: R | null): void {
    const old = this.row;
    if (row === null) {
      if (old !== null) {
        this.row = null;
        this.emit({ kind: "delete", id, row: null, old });
      }
    } else if (old === null) {
      this.row = row;
      this.emit({ kind: "insert", id, row, old: null });
    } else if (!sameRow(row as object, old as object)) {
      this.row = row;
      this.emit({ kind: "update", id, row, old });
    }
  }

  /** @internal */
  _apply(delta: Record<string, unknown>): void {
    for (const [key, value] of Object.entries(delta)) {
      this.set(int64(key), value === null || value === undefined ? null : cleanRow<R>(value));
    }
  }

  /** @internal */
  _replace(data: unknown): void {
    if (data === null || data === undefined) {
      if (this.row !== null) this.set(rowId(this.row as object), null);
    } else {
      const row = cleanRow<R>(data);
      this.set(rowId(row as object), row);
    }
  }

  /**
   * @internal A get subscription follows the row it found, not the index value: once the
   * row is known, subscribe again by its id.
   */
  override _restoreRequest(): unknown[] {
    if (this.row === null) return this._request;
    return ["sub", this.component, "get", "id", rowId(this.row as object)];
  }
}

/** The rows of an index range (`client.range`): `rows` maps row id → row. */
export class LiveRange<R = Row> extends LiveSubscription<R> {
  /** Row id → row. Ids follow the int64 policy: `number` when exact, else `bigint`. */
  readonly rows = new Map<Int64, R>();
  readonly index: string;
  readonly desc: boolean;

  /** @internal */
  constructor(owner: SubscriptionOwner, request: unknown[], rows: unknown) {
    super(owner, request);
    this.index = request[3] as string;
    this.desc = Boolean(request[7]);
    for (const row of (rows as unknown[] | null) ?? []) {
      const clean = cleanRow<R>(row);
      this.rows.set(rowId(clean as object), clean);
    }
  }

  get size(): number {
    return this.rows.size;
  }

  /** The rows in index order (as the server orders them), ties by id. */
  rowsList(): R[] {
    const field = this.index;
    const rows = [...this.rows.values()].sort((a, b) => {
      const byIndex = field === "id" ? 0 : compareValues((a as Row)[field], (b as Row)[field]);
      return byIndex !== 0 ? byIndex : compareValues((a as Row).id, (b as Row).id);
    });
    return this.desc ? rows.reverse() : rows;
  }

  private applyRows(delta: Iterable<[Int64, R | null]>): void {
    for (const [id, row] of delta) {
      const old = this.rows.get(id);
      if (row === null) {
        if (old !== undefined) {
          // nil for an id the range does not hold is ignored
          this.rows.delete(id);
          this.emit({ kind: "delete", id, row: null, old });
        }
      } else {
        this.rows.set(id, row);
        if (old === undefined) this.emit({ kind: "insert", id, row, old: null });
        else if (!sameRow(row as object, old as object)) this.emit({ kind: "update", id, row, old });
      }
    }
  }

  /** @internal */
  _apply(delta: Record<string, unknown>): void {
    this.applyRows(
      Object.entries(delta).map(([key, value]): [Int64, R | null] => [
        int64(key),
        value === null || value === undefined ? null : cleanRow<R>(value),
      ]),
    );
  }

  /** @internal */
  _replace(data: unknown): void {
    const fresh = new Map<Int64, R | null>();
    for (const row of (data as unknown[] | null) ?? []) {
      const clean = cleanRow<R>(row);
      fresh.set(rowId(clean as object), clean);
    }
    const gone: [Int64, null][] = [...this.rows.keys()].filter((id) => !fresh.has(id)).map((id) => [id, null]);
    this.applyRows([...gone, ...fresh]);
  }
}
