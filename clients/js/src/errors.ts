/**
 * Errors the client raises. They mirror `hetu.client.errors` of the Python client.
 *
 * ```ts
 * try {
 *   await client.call("user_chat", "hi");
 * } catch (err) {
 *   if (err instanceof CallRejected) console.log("slow down:", err.code);
 * }
 * ```
 */

/** The connection ended (a release-mode server drops it on illegal or failed requests). */
export class ConnectionClosed extends Error {
  constructor(message = "the connection is closed") {
    super(message);
    this.name = "ConnectionClosed";
  }
}

/**
 * The server refused the handshake (it answered an empty list): usually a wrong or
 * missing `authKey`, or a server whose `PACKET_LAYERS` differ from this client's.
 */
export class HandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HandshakeError";
  }
}

/** A guard rejected the call (`["rej", name, code]`); the connection stays open. */
export class CallRejected extends Error {
  readonly code: string;
  readonly endpoint: string;

  constructor(endpoint: string, code: string) {
    super(`${endpoint} rejected: ${code}`);
    this.name = "CallRejected";
    this.endpoint = endpoint;
    this.code = code;
  }
}

/**
 * The call or subscription failed (`["err", name, reason]` or `["sub", "fail", …]`).
 * Only debug-mode servers send these; release-mode servers close the connection instead.
 */
export class CallFailed extends Error {
  readonly reason: string;
  readonly endpoint: string;

  constructor(endpoint: string, reason: string) {
    super(`${endpoint} failed: ${reason}`);
    this.name = "CallFailed";
    this.endpoint = endpoint;
    this.reason = reason;
  }
}
