// The project's wire vectors (tests/server/vectors.json): every layer reproduces the
// client→server bytes exactly and decodes the server→client ones.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { HandshakeError } from "../src/errors.js";
import { CLIENT_DIRECTION, CryptoContext, CryptoLayer, SERVER_DIRECTION, sessionKey, signedHello } from "../src/layers/crypto.js";
import { MsgpackLayer } from "../src/layers/msgpack.js";
import { ZlibContext, ZlibLayer } from "../src/layers/zlib.js";
import { Pipeline } from "../src/pipeline.js";

interface Frame {
  tag: string;
  msgpack: string;
  zlib: string;
  nonce: string;
  frame: string;
}

const V = JSON.parse(readFileSync(new URL("../../../tests/server/vectors.json", import.meta.url), "utf8")) as Record<
  string,
  string
> & { frames: Frame[] };

const bytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));
const hex = (data: Uint8Array) => Buffer.from(data).toString("hex");

const CHAT_RANGE = "ChatMessage.id[0:9223372036854775807:1][:1024]";
const USER_GET = "OnlineUser.id[7390000000000000003:None:1][:1]";

// The logical message of each vector frame, as this client represents it (int64 policy:
// ids beyond 2^53 are bigints, everything else numbers).
const MESSAGES: Record<string, unknown[]> = {
  C1: ["rpc", "user_login", 1001, "alice"],
  S1: ["rsp", "ok"],
  C2: ["sub", "ChatMessage", "range", "id", 0, 9223372036854775807n, 1024, false, true],
  S2: [
    "sub",
    CHAT_RANGE,
    [
      {
        created_at_ms: 1700000000000,
        id: 7390000000000000001n,
        kind: "system",
        name: "alice",
        owner: 1001,
        text: "alice joined the chat",
      },
    ],
  ],
  C3: ["rpc", "user_chat", "hello"],
  S3: ["rsp", "ok"],
  S4: [
    "updt",
    CHAT_RANGE,
    {
      "7390000000000000002": {
        created_at_ms: 1700000000500,
        id: 7390000000000000002n,
        kind: "chat",
        name: "alice",
        owner: 1001,
        text: "hello",
      },
    },
  ],
  C4: ["unsub", CHAT_RANGE],
  C5: ["sub", "OnlineUser", "get", "owner", 1001],
  S5: ["sub", USER_GET, { id: 7390000000000000003n, last_seen_ms: 1700000000000, name: "alice", online: 1, owner: 1001 }],
  S6: ["rej", "user_chat", "RATE_LIMITED"],
  S7: ["err", "user_chat", "AssertionError: call user_login first"],
  S8: ["sub", null, null],
  S9: ["updt", USER_GET, { "7390000000000000003": null }],
};

const key = (frame: Frame) => frame.tag.split(" ")[0]!;
const fromClient = V.frames.filter((frame) => key(frame).startsWith("C"));
const fromServer = V.frames.filter((frame) => key(frame).startsWith("S"));
const DICTIONARY = "ChatMessage\nOnlineUser\n_version\ncreated_at_ms\nid\nkind\nlast_seen_ms\nname\nonline\nowner\ntext\nupdt";

/** A random source that hands out the vectors' private key, then the hello nonce. */
function fixedRandom(): (length: number) => Uint8Array {
  const values = [bytes(V.client_sk!), new Uint8Array(16).fill(1)];
  return (length) => {
    const value = values.shift()!;
    expect(value.length).toBe(length);
    return value;
  };
}

function vectorPipeline(authKey?: string): Pipeline {
  return new Pipeline([new MsgpackLayer(), new ZlibLayer({ level: 1 }), new CryptoLayer({ authKey, random: fixedRandom() })]);
}

describe("msgpack layer", () => {
  const layer = new MsgpackLayer();

  it.each(V.frames.map((frame) => [frame.tag, frame] as const))("decodes %s", (_tag, frame) => {
    expect(layer.decode(null, bytes(frame.msgpack))).toEqual(MESSAGES[key(frame)]);
  });

  // `updt` maps have integer keys, which only the server sends (a JS object's keys are strings)
  const encodable = V.frames.filter((frame) => !frame.tag.includes("updt"));
  it.each(encodable.map((frame) => [frame.tag, frame] as const))("encodes %s", (_tag, frame) => {
    expect(hex(layer.encode(null, MESSAGES[key(frame)]))).toBe(frame.msgpack);
  });

  it("reads the debug server's BAD_SUBS frame", () => {
    expect(layer.decode(null, bytes(V.bad_subs!))).toEqual([
      "sub",
      "fail",
      [{ id: 0, info: "DEBUG MODE: server rejected the request." }],
    ]);
  });

  it.each([
    ["rpc login", ["rpc", "login", 1], "93a3727063a56c6f67696e01"],
    ["rsp map", ["rsp", { id: 1 }], "92a372737081a2696401"],
    ["sub range", ["sub", "RLSComp", "range", "owner", 1, 999], "96a3737562a7524c53436f6d70a572616e6765a56f776e657201cd03e7"],
    ["sub get by id", ["sub", "OnlineUser", "get", "id", 7390000000000000003n], "95a3737562aa4f6e6c696e6555736572a3676574a26964cf668e8dd89a230003"],
    ["rsp 0", ["rsp", 0], "92a372737000"],
    ["sub nil", ["sub", null, []], "93a3737562c090"],
    ["motd", ["motd"], "91a46d6f7464"],
  ] as [string, unknown[], string][])("matches the reference encoding of %s", (_name, message, expected) => {
    expect(hex(layer.encode(null, message))).toBe(expected);
    expect(layer.decode(null, bytes(expected))).toEqual(message);
  });
});

describe("zlib layer", () => {
  it("compresses the client's messages to the vector bytes, in one stream", () => {
    const zlib = new ZlibContext(new TextEncoder().encode(DICTIONARY));
    for (const frame of fromClient) expect(hex(zlib.compress(bytes(frame.msgpack)))).toBe(frame.zlib);
  });

  it("inflates the server's messages, in one stream", () => {
    const zlib = new ZlibContext(new TextEncoder().encode(DICTIONARY));
    for (const frame of fromServer) expect(hex(zlib.decompress(bytes(frame.zlib)))).toBe(frame.msgpack);
  });

  it("each server message ends with the sync flush marker", () => {
    for (const frame of fromServer) expect(frame.zlib.endsWith("0000ffff")).toBe(true);
  });

  it("refuses a message inflating beyond the limit", () => {
    const dictionary = new TextEncoder().encode(DICTIONARY);
    const sender = new ZlibContext(dictionary);
    const receiver = new ZlibContext(dictionary, 1, 1000);
    expect(() => receiver.decompress(sender.compress(new Uint8Array(5000)))).toThrow(/inflates beyond 1000 bytes/);
  });
});

describe("crypto layer", () => {
  it("derives the session key from the vector keys", () => {
    expect(hex(sessionKey(bytes(V.client_sk!), bytes(V.server_pk!)))).toBe(V.session_key);
    expect(hex(sessionKey(bytes(V.server_sk!), bytes(V.client_pk!)))).toBe(V.session_key);
  });

  it("signs the hello with the auth key", () => {
    const hello = signedHello(bytes(V.client_pk!), "password123", new Uint8Array(16).fill(1));
    expect(hex(hello.subarray(60))).toBe(V.hmac);
  });

  it("seals the client's messages to the vector frames with nonces ff‖counter", () => {
    const ctx = new CryptoContext(bytes(V.session_key!), CLIENT_DIRECTION, SERVER_DIRECTION);
    for (const frame of fromClient) {
      expect(frame.nonce.startsWith("ff")).toBe(true);
      expect(hex(ctx.seal(bytes(frame.zlib)))).toBe(frame.frame);
    }
  });

  it("opens the server's frames with nonces 00‖counter", () => {
    const ctx = new CryptoContext(bytes(V.session_key!), CLIENT_DIRECTION, SERVER_DIRECTION);
    for (const frame of fromServer) expect(hex(ctx.open(bytes(frame.frame)))).toBe(frame.zlib);
  });

  it("refuses a replayed frame", () => {
    const ctx = new CryptoContext(bytes(V.session_key!), CLIENT_DIRECTION, SERVER_DIRECTION);
    ctx.open(bytes(fromServer[0]!.frame));
    expect(() => ctx.open(bytes(fromServer[0]!.frame))).toThrow(/failed authentication/);
  });

  it("refuses an altered frame", () => {
    const ctx = new CryptoContext(bytes(V.session_key!), CLIENT_DIRECTION, SERVER_DIRECTION);
    const altered = bytes(fromServer[0]!.frame);
    altered[3] ^= 1;
    expect(() => ctx.open(altered)).toThrow(/failed authentication/);
  });

  it("refuses a frame shorter than the tag", () => {
    const ctx = new CryptoContext(bytes(V.session_key!), CLIENT_DIRECTION, SERVER_DIRECTION);
    expect(() => ctx.open(new Uint8Array(15))).toThrow(/shorter than its tag/);
  });
});

describe("the whole pipeline", () => {
  it("sends the signed hello of the vectors", () => {
    expect(hex(vectorPipeline("password123").clientHello().message)).toBe(V.hello_frame_signed);
  });

  it("sends the bare public key without an auth key", () => {
    expect(hex(vectorPipeline().clientHello().message)).toBe(V.hello_frame_legacy);
  });

  it("takes the dictionary and the server key from the handshake reply", () => {
    const pipeline = vectorPipeline("password123");
    const { pending } = pipeline.clientHello();
    const wire = pipeline.clientHandshake(pending, bytes(V.server_reply!));
    const contexts = (wire as unknown as { contexts: unknown[] }).contexts;
    expect(new TextDecoder().decode((contexts[1] as ZlibContext).dictionary)).toBe(DICTIONARY);
    expect(hex((contexts[2] as CryptoContext).key)).toBe(V.session_key);
  });

  it("replays the chat transcript: client frames byte for byte, server frames decoded", () => {
    const pipeline = vectorPipeline("password123");
    const { pending } = pipeline.clientHello();
    const wire = pipeline.clientHandshake(pending, bytes(V.server_reply!));
    for (const frame of V.frames) {
      const message = MESSAGES[key(frame)]!;
      if (key(frame).startsWith("C")) expect(hex(wire.encode(message))).toBe(frame.frame);
      else expect(wire.decode(bytes(frame.frame))).toEqual(message);
    }
  });

  it("raises HandshakeError when the server refuses the hello", () => {
    const pipeline = vectorPipeline("wrong");
    const { pending } = pipeline.clientHello();
    expect(V.handshake_fail).toBe("90");
    expect(() => pipeline.clientHandshake(pending, bytes(V.handshake_fail!))).toThrow(HandshakeError);
  });

  it("raises HandshakeError for a server key of the wrong length", () => {
    const pipeline = vectorPipeline();
    const { pending } = pipeline.clientHello();
    const reply = new MsgpackLayer().encode(null, [new Uint8Array(3), new Uint8Array(31)]);
    expect(() => pipeline.clientHandshake(pending, reply)).toThrow(/32 bytes/);
  });
});
