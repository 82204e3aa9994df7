/**
 * How 64-bit integers cross between msgpack and JavaScript.
 *
 * The server's ids are int64 snowflakes (about 7.4e18), beyond the 2^53 that a `number`
 * holds exactly. The rule, applied to every integer the client decodes:
 *
 * - a value within ±`Number.MAX_SAFE_INTEGER` is a `number`;
 * - any other value is a `bigint`.
 *
 * The type depends on the value only, never on how the server happened to encode it, so
 * the same id always has the same JavaScript type and can be used as a `Map` key
 * (`live.rows.get(row.id)`). When sending, integral `number`s and `bigint`s both become
 * msgpack integers in the smallest encoding (as the Python client sends them); other
 * numbers become float64.
 *
 * ```ts
 * int64("7390000000000000002"); // 7390000000000000002n
 * int64(42n);                   // 42
 * ```
 */

/** An integer as the client hands it out: `number` when exact, `bigint` otherwise. */
export type Int64 = number | bigint;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = -MAX_SAFE;
const INT64_MIN = -(BigInt(1) << BigInt(63));
const UINT64_MAX = (BigInt(1) << BigInt(64)) - BigInt(1);
const UINT32_LIMIT = 2 ** 32;
const INT32_MIN = -(2 ** 31);

/**
 * Normalise an integer given as a number, bigint or decimal string to the client's
 * representation. Throws a `RangeError` for a non-integer.
 */
export function int64(value: number | bigint | string): Int64 {
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new RangeError(`${value} is not an integer`);
    return Number.isSafeInteger(value) ? value : BigInt(value);
  }
  let big: bigint;
  try {
    big = typeof value === "bigint" ? value : BigInt(value.trim());
  } catch {
    throw new RangeError(`${JSON.stringify(value)} is not an integer`);
  }
  return big >= MIN_SAFE && big <= MAX_SAFE ? Number(big) : big;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * A decoded message with every `bigint` that fits a `number` turned into one (in place:
 * the decoder's fresh arrays and objects are owned by the caller).
 */
export function normalizeDecoded<T>(value: T): T {
  if (typeof value === "bigint") {
    return (value >= MIN_SAFE && value <= MAX_SAFE ? Number(value) : value) as T;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = normalizeDecoded(value[i]);
  } else if (value !== null && typeof value === "object" && isPlainObject(value)) {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = normalizeDecoded(record[key]);
  }
  return value;
}

/**
 * A message ready for the msgpack encoder: integers that need 64 bits become `bigint`s
 * (the encoder writes them as int64/uint64) and `bigint`s that fit 32 bits become
 * `number`s (written in the smallest encoding). Returns a copy; the input is untouched.
 */
export function prepareForEncoding(value: unknown): unknown {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && (value >= UINT32_LIMIT || value < INT32_MIN)) return BigInt(value);
    return value;
  }
  if (typeof value === "bigint") {
    if (value < INT64_MIN || value > UINT64_MAX) {
      throw new RangeError(`${value} does not fit in 64 bits`);
    }
    const small = value >= BigInt(INT32_MIN) && value < BigInt(UINT32_LIMIT);
    return small ? Number(value) : value;
  }
  if (Array.isArray(value)) return value.map(prepareForEncoding);
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value) && isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = prepareForEncoding(item);
    return out;
  }
  return value;
}

/** Order two index values the way the server does: numbers and bigints by value, strings by code unit. */
export function compareValues(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  if ((a as number) < (b as number)) return -1;
  if ((a as number) > (b as number)) return 1;
  return 0;
}
