// The int64 policy: a decoded integer is a number when it is exact as one, a bigint otherwise.

import { describe, expect, it } from "vitest";
import { int64, prepareForEncoding } from "../src/int64.js";
import { MsgpackLayer } from "../src/layers/msgpack.js";

const layer = new MsgpackLayer();
const hex = (data: Uint8Array) => Buffer.from(data).toString("hex");
const roundTrip = (value: unknown) => (layer.decode(null, layer.encode(null, [value])) as unknown[])[0];

describe("decoding", () => {
  it.each([
    ["the largest safe integer", "cf001fffffffffffff", Number.MAX_SAFE_INTEGER],
    ["the smallest safe integer", "d3ffe0000000000001", -Number.MAX_SAFE_INTEGER],
    ["2^32 sent as uint64", "cf0000000100000000", 2 ** 32],
    ["a uint32", "ceffffffff", 2 ** 32 - 1],
    ["2^53", "cf0020000000000000", 2n ** 53n],
    ["-(2^53)", "d3ffe0000000000000", -(2n ** 53n)],
    ["a snowflake id", "cf668e8dd89a230003", 7390000000000000003n],
    ["the largest uint64", "cfffffffffffffffff", 2n ** 64n - 1n],
    ["the smallest int64", "d38000000000000000", -(2n ** 63n)],
  ])("%s", (_name, encoded, expected) => {
    expect((layer.decode(null, Buffer.from(`91${encoded}`, "hex")) as unknown[])[0]).toBe(expected);
  });

  it("gives the same type to the same value however it was encoded", () => {
    // 5 as fixint and as uint64: the server may send either
    expect(layer.decode(null, Buffer.from("9205cf0000000000000005", "hex"))).toEqual([5, 5]);
  });

  it("turns 64-bit map keys into their exact decimal strings", () => {
    const decoded = layer.decode(null, Buffer.from("81cf668e8dd89a230003c0", "hex")) as Record<string, unknown>;
    expect(Object.keys(decoded)).toEqual(["7390000000000000003"]);
  });

  it("normalises integers inside nested rows", () => {
    const decoded = layer.decode(null, Buffer.from("9181a26964cf668e8dd89a230003", "hex"));
    expect(decoded).toEqual([{ id: 7390000000000000003n }]);
  });
});

describe("encoding", () => {
  it.each([
    ["a small number", 5, "05"],
    ["a small bigint", 5n, "05"],
    ["a uint32 bigint", 4294967295n, "ceffffffff"],
    ["a number needing 64 bits", 2 ** 40, "cf0000010000000000"],
    ["a negative number needing 64 bits", -(2 ** 40), "d3ffffff0000000000"],
    ["a snowflake bigint", 7390000000000000003n, "cf668e8dd89a230003"],
    ["a negative bigint", -(2n ** 63n), "d38000000000000000"],
    ["a fraction", 0.5, "cb3fe0000000000000"],
  ])("writes %s in the smallest integer encoding", (_name, value, expected) => {
    expect(hex(layer.encode(null, [value])).slice(2)).toBe(expected);
  });

  it("refuses a bigint beyond 64 bits", () => {
    expect(() => layer.encode(null, [2n ** 64n])).toThrow(/does not fit in 64 bits/);
    expect(() => layer.encode(null, [-(2n ** 63n) - 1n])).toThrow(/does not fit in 64 bits/);
  });

  it("does not touch the caller's values", () => {
    const args = [{ id: 2 ** 40 }];
    prepareForEncoding(args);
    expect(args).toEqual([{ id: 2 ** 40 }]);
  });

  it.each([0, -1, 2 ** 31, 2 ** 53 - 1, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n, -(2n ** 63n)])("round-trips %s", (value) => {
    expect(roundTrip(value)).toBe(int64(value));
  });

  it("keeps bytes as bin", () => {
    expect(hex(layer.encode(null, [Uint8Array.of(1, 2)]))).toBe("91c4020102");
    expect(roundTrip(Uint8Array.of(1, 2))).toEqual(Uint8Array.of(1, 2));
  });
});

describe("int64()", () => {
  it.each([
    [42n, 42],
    ["7390000000000000002", 7390000000000000002n],
    [" -12 ", -12],
    [2 ** 53, 2n ** 53n],
    [-7, -7],
  ] as [number | bigint | string, number | bigint][])("normalises %s", (given, expected) => {
    expect(int64(given)).toBe(expected);
  });

  it("refuses what is not an integer", () => {
    expect(() => int64(1.5)).toThrow(RangeError);
    expect(() => int64("12abc")).toThrow(RangeError);
  });
});
