/**
 * Which WebSocket implementation the client uses: the one passed in the options, else
 * `globalThis.WebSocket` (browsers, Node 22+, Deno, Bun), else the `ws` package (Node 20
 * and older have no global WebSocket).
 */

/** The part of the WHATWG WebSocket interface the client needs (the `ws` package has it too). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array | ArrayBuffer | string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export const OPEN = 1;

/** The WebSocket constructor to use; throws when there is none. */
export async function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given !== undefined) return given;
  const native = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof native === "function") return native as WebSocketConstructor;
  try {
    const ws = (await import("ws")) as unknown as { WebSocket?: unknown; default?: unknown };
    const constructor = ws.WebSocket ?? ws.default;
    if (typeof constructor === "function") return constructor as WebSocketConstructor;
  } catch {
    // not installed: explained below
  }
  throw new Error(
    "no WebSocket implementation: this runtime has no global WebSocket; install the `ws` " +
      "package (npm install ws) or pass one as the `WebSocket` option",
  );
}

/** A received frame's payload as bytes, or as a string for a text frame. */
export function framePayload(data: unknown): Uint8Array | string {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`unsupported websocket payload ${Object.prototype.toString.call(data)}`);
}
