/**
 * `crypto`: an X25519 key exchange per connection, session key = BLAKE2b-256 of the shared
 * secret, messages sealed with ChaCha20-Poly1305-IETF (ciphertext ‖ tag, no associated
 * data). The 12-byte nonce is never sent: a direction byte (`0xFF` client→server, `0x00`
 * server→client) and an 11-byte big-endian counter that starts at 1 in each direction, so
 * a reordered, replayed or altered frame fails to open.
 */

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { blake2b } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { HandshakeError } from "../errors.js";
import type { Layer } from "../pipeline.js";
import { randomBytes } from "../random.js";

export const KEY_LENGTH = 32;
export const TAG_LENGTH = 16;
export const CLIENT_DIRECTION = 0xff;
export const SERVER_DIRECTION = 0x00;
const MAGIC = new TextEncoder().encode("H2A1");
const TIMESTAMP_LENGTH = 8; // part of the signed hello; the server does not read it
const HELLO_NONCE_LENGTH = 16;

/** BLAKE2b-256 of the X25519 shared secret. */
export function sessionKey(privateKey: Uint8Array, peerPublic: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(privateKey, peerPublic);
  } catch (err) {
    throw new HandshakeError(`key exchange failed: ${(err as Error).message}`);
  }
  return blake2b(shared, { dkLen: 32 });
}

/** The 92-byte `H2A1` hello: magic ‖ public key ‖ timestamp ‖ nonce ‖ HMAC-SHA256 of those 60 bytes. */
export function signedHello(publicKey: Uint8Array, authKey: string, nonce: Uint8Array): Uint8Array {
  const hello = new Uint8Array(MAGIC.length + KEY_LENGTH + TIMESTAMP_LENGTH + HELLO_NONCE_LENGTH + 32);
  hello.set(MAGIC, 0);
  hello.set(publicKey, MAGIC.length);
  hello.set(nonce, MAGIC.length + KEY_LENGTH + TIMESTAMP_LENGTH);
  const signed = hello.subarray(0, 60);
  hello.set(hmac(sha256, new TextEncoder().encode(authKey), signed), 60);
  return hello;
}

/** The key and message counters of one connection. */
export class CryptoContext {
  sent = 0;
  received = 0;

  constructor(
    readonly key: Uint8Array,
    readonly sendDirection: number,
    readonly receiveDirection: number,
  ) {}

  private static nonce(direction: number, counter: number): Uint8Array {
    const nonce = new Uint8Array(12);
    nonce[0] = direction;
    let rest = counter;
    for (let i = 11; i > 0 && rest > 0; i--) {
      nonce[i] = rest % 256;
      rest = Math.floor(rest / 256);
    }
    return nonce;
  }

  seal(data: Uint8Array): Uint8Array {
    this.sent += 1;
    return chacha20poly1305(this.key, CryptoContext.nonce(this.sendDirection, this.sent)).encrypt(data);
  }

  open(data: Uint8Array): Uint8Array {
    if (data.length < TAG_LENGTH) throw new Error("an encrypted message is shorter than its tag");
    this.received += 1;
    try {
      return chacha20poly1305(this.key, CryptoContext.nonce(this.receiveDirection, this.received)).decrypt(data);
    } catch {
      throw new Error("a message failed authentication (tampered, replayed or out of order)");
    }
  }
}

export interface CryptoLayerOptions {
  /** The server's `auth_key`: the hello is then signed (required by such servers). */
  authKey?: string | undefined;
  /** Source of the private key and hello nonce; tests pass a fixed one. */
  random?: (length: number) => Uint8Array;
}

export class CryptoLayer implements Layer<CryptoContext, Uint8Array> {
  readonly alias = "crypto";
  readonly handshakeRequired = true;
  readonly authKey: string | undefined;
  private readonly random: (length: number) => Uint8Array;

  constructor(options: CryptoLayerOptions = {}) {
    this.authKey = options.authKey || undefined;
    this.random = options.random ?? randomBytes;
  }

  /** A fresh key pair; the hello is the signed `H2A1` one with an auth key, else the bare public key. */
  clientHello(): { pending: Uint8Array; hello: Uint8Array } {
    const privateKey = this.random(KEY_LENGTH);
    const publicKey = x25519.getPublicKey(privateKey);
    const hello = this.authKey ? signedHello(publicKey, this.authKey, this.random(HELLO_NONCE_LENGTH)) : publicKey;
    return { pending: privateKey, hello };
  }

  clientHandshake(privateKey: Uint8Array, reply: unknown): CryptoContext {
    if (!(reply instanceof Uint8Array) || reply.length !== KEY_LENGTH) {
      throw new HandshakeError("the server's public key must be 32 bytes (is the authKey right?)");
    }
    return new CryptoContext(sessionKey(privateKey, reply), CLIENT_DIRECTION, SERVER_DIRECTION);
  }

  encode(ctx: CryptoContext | null, data: unknown): unknown {
    return ctx === null ? data : ctx.seal(data as Uint8Array);
  }

  decode(ctx: CryptoContext | null, data: unknown): unknown {
    return ctx === null ? data : ctx.open(data as Uint8Array);
  }
}
