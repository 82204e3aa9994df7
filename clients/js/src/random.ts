/**
 * Cryptographically secure random bytes from Web Crypto: `globalThis.crypto` in browsers
 * and Node 20+; Node 18 keeps it in `node:crypto`, loaded once by `ensureRandom()`.
 */

interface RandomSource {
  getRandomValues<T extends ArrayBufferView>(array: T): T;
}

let source: RandomSource | undefined = (globalThis as { crypto?: RandomSource }).crypto;

/** Make sure a random source is available (a no-op outside Node 18). */
export async function ensureRandom(): Promise<void> {
  if (source !== undefined) return;
  try {
    const nodeCrypto = (await import("node:crypto")) as unknown as { webcrypto?: RandomSource };
    source = nodeCrypto.webcrypto;
  } catch {
    // no Node either: randomBytes says what is missing
  }
}

export function randomBytes(length: number): Uint8Array {
  if (source === undefined) {
    throw new Error("no secure random source: this runtime lacks Web Crypto (globalThis.crypto)");
  }
  return source.getRandomValues(new Uint8Array(length));
}
