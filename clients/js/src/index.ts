/**
 * A client for HeTu game servers, for browsers and Node.js.
 *
 * ```ts
 * import { HeTuClient, MAX_INT64 } from "hetu-client";
 *
 * const client = await HeTuClient.connect("ws://127.0.0.1:2466/hetu/dev", { authKey: "password123" });
 * await client.call("user_login", 1001, "Alice");
 * const messages = await client.range("ChatMessage", "id", 0, MAX_INT64, { limit: 100 });
 * messages?.onInsert((row) => console.log(row.name, row.text));
 * ```
 *
 * `HeTuSession` reconnects by itself, logs in again and restores live subscriptions.
 */

export {
  HeTuClient, MAX_INT64,
  type AnyRows, type ComponentName, type ConnectOptions, type ConnState, type FieldName, type RangeOptions, type Subscriber,
} from "./client.js";
export { CallFailed, CallRejected, ConnectionClosed, HandshakeError } from "./errors.js";
export { int64, type Int64 } from "./int64.js";
export { LiveRange, LiveRow, LiveSubscription, type Change, type ChangeKind, type Row } from "./live.js";
export { ConnectionPipeline, defaultPipeline, Pipeline, type Layer, type PendingHandshake } from "./pipeline.js";
export { CryptoContext, CryptoLayer, sessionKey, signedHello, type CryptoLayerOptions } from "./layers/crypto.js";
export { MsgpackLayer } from "./layers/msgpack.js";
export { ZlibContext, ZlibLayer } from "./layers/zlib.js";
export { HeTuSession, type SessionOptions } from "./session.js";
export type { WebSocketConstructor, WebSocketLike } from "./websocket.js";
