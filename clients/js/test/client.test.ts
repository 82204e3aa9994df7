// HeTuClient against the in-memory server: handshake, FIFO replies, errors, live
// subscriptions and the end of a connection.

import { afterEach, describe, expect, it } from "vitest";
import { HeTuClient } from "../src/client.js";
import { CallFailed, CallRejected, ConnectionClosed, HandshakeError } from "../src/errors.js";
import type { Change } from "../src/live.js";
import { FakeServer, until, type FakeConnection } from "./fake-server.js";

const URL = "ws://fake/hetu/test";
const ID = 7390000000000000001n;
const hero = (hp: number) => ({ id: ID, owner: 7, name: "Ann", hp });
const SUB_ID = `Hero.id[${ID}:None:1][:1]`;
const RANGE_ID = "Hero.owner[0:100:1][:10]";

/** A server answering each rpc with ["rsp", [name, ...args]] unless `reply` says otherwise. */
function echoServer(reply: (message: unknown[], conn: FakeConnection) => boolean = () => false, authKey?: string) {
  return new FakeServer((message, conn) => {
    if (reply(message, conn)) return;
    if (message[0] === "rpc") conn.push(["rsp", message.slice(1)]);
  }, authKey);
}

const clients: HeTuClient[] = [];
async function connect(server: FakeServer, authKey?: string): Promise<HeTuClient> {
  const client = await HeTuClient.connect(URL, { WebSocket: server.WebSocket, authKey });
  clients.push(client);
  return client;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

describe("connecting", () => {
  it("does the signed handshake and opens", async () => {
    const server = echoServer(undefined, "secret");
    const client = await connect(server, "secret");
    expect(client.state).toBe("open");
    expect(await client.call("ping")).toEqual(["ping"]);
  });

  it("rejects with HandshakeError when the server refuses the auth key", async () => {
    const server = echoServer(undefined, "secret");
    await expect(connect(server, "wrong")).rejects.toThrow(HandshakeError);
  });

  it("rejects with ConnectionClosed when the server cannot be reached", async () => {
    const server = echoServer();
    server.accepting = false;
    await expect(connect(server)).rejects.toThrow(ConnectionClosed);
  });

  it("gives up after timeoutMs when the server never answers the hello", async () => {
    const server = echoServer();
    server.silent = true;
    const started = Date.now();
    await expect(HeTuClient.connect(URL, { WebSocket: server.WebSocket, timeoutMs: 50 })).rejects.toThrow(/within 50 ms/);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("calls", () => {
  it("sends the arguments in order and resolves with the payload", async () => {
    const server = echoServer();
    const client = await connect(server);
    expect(await client.call("post", 1, "two", ID, Uint8Array.of(3))).toEqual(["post", 1, "two", ID, Uint8Array.of(3)]);
    expect(server.last.received[0]).toEqual(["rpc", "post", 1, "two", ID, Uint8Array.of(3)]);
  });

  it("matches concurrent calls to replies first in, first out", async () => {
    const server = echoServer();
    const client = await connect(server);
    const replies = await Promise.all([client.call("a"), client.call("b"), client.call("c")]);
    expect(replies).toEqual([["a"], ["b"], ["c"]]);
  });

  it("rejects with CallRejected on rej and keeps the connection", async () => {
    const server = echoServer((message, conn) => {
      if (message[1] !== "limited") return false;
      conn.push(["rej", "limited", "RATE_LIMITED"]);
      return true;
    });
    const client = await connect(server);
    const error = await client.call("limited").catch((err: unknown) => err);
    expect(error).toBeInstanceOf(CallRejected);
    expect(error).toMatchObject({ endpoint: "limited", code: "RATE_LIMITED" });
    expect(await client.call("after")).toEqual(["after"]);
  });

  it("rejects with CallFailed on err", async () => {
    const server = echoServer((message, conn) => {
      if (message[1] !== "crash") return false;
      conn.push(["err", "crash", "RuntimeError: boom"]);
      return true;
    });
    const client = await connect(server);
    await expect(client.call("crash")).rejects.toMatchObject({ name: "CallFailed", reason: "RuntimeError: boom" });
    expect(client.isOpen).toBe(true);
  });

  it("reads the motd text frame", async () => {
    const server = echoServer((message, conn) => {
      if (message[0] !== "motd") return false;
      conn.socket.deliver("Welcome to HeTu!");
      return true;
    });
    const client = await connect(server);
    expect(await client.motd()).toBe("Welcome to HeTu!");
  });

  it("keeps a frame that answers nothing aside instead of giving it to the next call", async () => {
    const badSubs = ["sub", "fail", [{ id: 0, info: "DEBUG MODE: server rejected the request." }]];
    const server = echoServer((message, conn) => {
      if (message[1] !== "first") return false;
      conn.push(badSubs); // the extra frame a debug server sends after a subscription over the limit
      conn.push(["rsp", "first"]);
      return true;
    });
    const client = await connect(server);
    expect(await client.call("first")).toBe("first");
    expect(client.unsolicited).toEqual([badSubs]);
  });
});

describe("the end of a connection", () => {
  it("rejects waiting calls, resolves closed and refuses new calls when the server drops it", async () => {
    const server = echoServer((message) => message[1] === "hang");
    const client = await connect(server);
    const waiting = client.call("hang");
    server.dropAll();
    await expect(waiting).rejects.toThrow(ConnectionClosed);
    await client.closed;
    expect(client.state).toBe("closed");
    expect(client.closeReason).toMatch(/code 1006/);
    await expect(client.call("again")).rejects.toThrow(ConnectionClosed);
  });

  it("drops the connection when a frame fails authentication", async () => {
    const server = echoServer((message, conn) => {
      if (message[1] !== "tamper") return false;
      const frame = conn.encode(["rsp", "x"]);
      frame[0] ^= 1;
      conn.pushRaw(frame);
      return true;
    });
    const client = await connect(server);
    await expect(client.call("tamper")).rejects.toThrow(/failed authentication/);
    expect(client.state).toBe("closed");
  });

  it("close() ends it and its live subscriptions", async () => {
    const server = echoServer((message, conn) => {
      if (message[0] !== "sub") return false;
      conn.push(["sub", RANGE_ID, []]);
      return true;
    });
    const client = await connect(server);
    const live = (await client.range("Hero", "owner", 0, 100))!;
    const loop = (async () => {
      for await (const change of live) void change;
    })();
    await client.close();
    await loop;
    expect(live.closed).toBe(true);
    expect(client.state).toBe("closed");
  });
});

describe("live subscriptions", () => {
  function subServer(rows: { get?: unknown; range?: unknown[] }) {
    return echoServer((message, conn) => {
      if (message[0] !== "sub") return false;
      if (message[1] === "Nope") conn.push(["sub", "fail", [{ id: 0, info: "DEBUG MODE: server rejected the request." }]]);
      else if (message[2] === "get") conn.push(rows.get === null ? ["sub", null, null] : ["sub", SUB_ID, rows.get]);
      else conn.push(["sub", RANGE_ID, rows.range ?? []]);
      return true;
    });
  }

  it("get follows its row through the server's pushes", async () => {
    const server = subServer({ get: { ...hero(10), _version: 3 } });
    const client = await connect(server);
    const live = (await client.get("Hero", "owner", 7))!;
    expect(server.last.received[0]).toEqual(["sub", "Hero", "get", "owner", 7]);
    expect(live.subId).toBe(SUB_ID);
    expect(live.row).toEqual(hero(10));
    const updates: unknown[] = [];
    live.onUpdate((row, old) => updates.push([old.hp, row.hp]));
    server.last.push(["updt", SUB_ID, { [ID.toString()]: hero(9) }]);
    await until(() => updates.length === 1);
    expect(updates).toEqual([[10, 9]]);
    server.last.push(["updt", SUB_ID, { [ID.toString()]: null }]);
    await until(() => live.row === null);
  });

  it("get resolves null when there is no such row", async () => {
    const client = await connect(subServer({ get: null }));
    expect(await client.get("Hero", "owner", 404)).toBeNull();
  });

  it("range sends every parameter and applies pushes", async () => {
    const server = subServer({ range: [hero(10)] });
    const client = await connect(server);
    const live = (await client.range("Hero", "owner", 0, 100, { limit: 5, desc: true, force: false }))!;
    expect(server.last.received[0]).toEqual(["sub", "Hero", "range", "owner", 0, 100, 5, true, false]);
    const changes: Change[] = [];
    const loop = (async () => {
      for await (const change of live) {
        changes.push(change);
        if (changes.length === 2) break;
      }
    })();
    server.last.push(["updt", RANGE_ID, { [ID.toString()]: null, "12": { id: 12, owner: 8, name: "Bo", hp: 1 } }]);
    await loop;
    expect(changes.map((c) => [c.kind, c.id]).sort()).toEqual([["delete", ID], ["insert", 12]]);
    expect([...live.rows.keys()]).toEqual([12]);
  });

  it("range without right sends nil (equal to left) and the defaults", async () => {
    const server = subServer({});
    const client = await connect(server);
    await client.range("Hero", "owner", 7);
    expect(server.last.received[0]).toEqual(["sub", "Hero", "range", "owner", 7, null, 10, false, true]);
  });

  it("subscribing to the same query twice gives the same object", async () => {
    const client = await connect(subServer({}));
    const first = await client.range("Hero", "owner", 0, 100);
    expect(await client.range("Hero", "owner", 0, 100)).toBe(first);
  });

  it("a push right behind the reply reaches the new subscription", async () => {
    const server = echoServer((message, conn) => {
      if (message[0] !== "sub") return false;
      conn.push(["sub", RANGE_ID, []]);
      conn.push(["updt", RANGE_ID, { [ID.toString()]: hero(1) }]);
      return true;
    });
    const client = await connect(server);
    const live = (await client.range("Hero", "owner", 0, 100))!;
    await until(() => live.rows.size === 1);
  });

  it("unsubscribe sends unsub and ignores later pushes", async () => {
    const server = subServer({});
    const client = await connect(server);
    const live = (await client.range("Hero", "owner", 0, 100))!;
    await live.unsubscribe();
    await until(() => server.last.received.length === 2);
    expect(server.last.received[1]).toEqual(["unsub", RANGE_ID]);
    expect(live.closed).toBe(true);
    server.last.push(["updt", RANGE_ID, { "1": { id: 1 } }]);
    expect(await client.call("still")).toEqual(["still"]);
    expect(live.rows.size).toBe(0);
  });

  it("rejects with CallFailed when a debug server refuses the subscription", async () => {
    const client = await connect(subServer({}));
    await expect(client.range("Nope", "id", 0, 1)).rejects.toThrow(CallFailed);
  });
});
