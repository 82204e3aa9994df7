// HeTuSession against the in-memory server: reconnection, login again, subscriptions
// restored with their differences, calls waiting for the connection.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { HeTuClient } from "../src/client.js";
import { CallRejected, ConnectionClosed } from "../src/errors.js";
import { HeTuSession, type SessionOptions } from "../src/session.js";
import { FakeServer, until } from "./fake-server.js";

const URL = "ws://fake/hetu/test";
const RANGE_ID = "Board.owner[1:1:1][:10]";

/** A board of rows the tests edit between connections; every rpc is answered "ok". */
function boardServer() {
  const rows = new Map<number, { id: number; owner: number; note: string }>();
  const server = new FakeServer((message, conn) => {
    if (message[0] === "rpc") conn.push(["rsp", message[1] === "login" ? { id: message[2] } : "ok"]);
    else if (message[0] === "sub" && message[2] === "range") conn.push(["sub", RANGE_ID, [...rows.values()]]);
    else if (message[0] === "sub" && message[2] === "get") {
      const row = [...rows.values()].find((r) => r[message[3] as "id"] === message[4]);
      conn.push(row === undefined ? ["sub", null, null] : ["sub", `Board.id[${row.id}:None:1][:1]`, row]);
    }
  });
  return { server, rows };
}

const sessions: HeTuSession[] = [];
function session(server: FakeServer, options: SessionOptions = {}): HeTuSession {
  const made = new HeTuSession(URL, { WebSocket: server.WebSocket, minDelayMs: 5, maxDelayMs: 20, ...options });
  sessions.push(made);
  return made;
}

beforeEach(() => {
  vi.spyOn(console, "warn").mockImplementation(() => {}); // failed reconnection attempts
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

describe("HeTuSession", () => {
  it("logs in again and restores subscriptions, emitting what changed meanwhile", async () => {
    const { server, rows } = boardServer();
    rows.set(1, { id: 1, owner: 1, note: "kept" });
    rows.set(2, { id: 2, owner: 1, note: "doomed" });
    const logins: unknown[] = [];
    const s = session(server, { onConnect: async (client: HeTuClient) => logins.push(await client.call("login", 801)) });
    await s.start();
    const live = (await s.range("Board", "owner", 1, 1))!;
    const mine = (await s.get("Board", "note", "kept"))!;
    const seen: string[] = [];
    live.onInsert((row) => seen.push(`insert ${row.note}`));
    live.onDelete((old) => seen.push(`delete ${old.note}`));
    mine.onUpdate((row) => seen.push(`row ${row.note}`));

    server.accepting = false;
    server.dropAll();
    await until(() => !s.connected);
    rows.delete(2);
    rows.set(3, { id: 3, owner: 1, note: "meanwhile" });
    rows.set(1, { id: 1, owner: 1, note: "edited" });
    await new Promise((resolve) => setTimeout(resolve, 30)); // a failed attempt or two
    server.accepting = true;

    await until(() => s.connected && seen.length === 3);
    expect(seen.sort()).toEqual(["delete doomed", "insert meanwhile", "row edited"]);
    expect(logins).toEqual([{ id: 801 }, { id: 801 }]);
    expect(s.connections).toBe(2);
    expect(live.closed).toBe(false);
    expect(live.subId).toBe(RANGE_ID);
    // the get subscription follows its row by id, whatever index found it
    expect(server.last.received).toContainEqual(["sub", "Board", "get", "id", 1]);
  });

  it("a call made while reconnecting waits for the connection", async () => {
    const { server } = boardServer();
    const s = session(server);
    await s.start();
    server.accepting = false;
    server.dropAll();
    await until(() => !s.connected);
    const waiting = s.call("post", 1);
    setTimeout(() => {
      server.accepting = true;
    }, 30);
    expect(await waiting).toBe("ok");
    expect(s.connections).toBe(2);
  });

  it("a call waits at most callTimeoutMs", async () => {
    const { server } = boardServer();
    const s = session(server, { callTimeoutMs: 50 });
    await s.start();
    server.accepting = false;
    server.dropAll();
    await until(() => !s.connected);
    await expect(s.call("post", 1)).rejects.toThrow(/not connected .* after 50 ms/);
  });

  it("a call in flight when the connection drops rejects and is not repeated", async () => {
    const server = new FakeServer(() => {}); // never answers
    const s = session(server);
    await s.start();
    const inFlight = s.call("post", 1);
    await until(() => server.last.received.length === 1);
    server.dropAll();
    await expect(inFlight).rejects.toThrow(ConnectionClosed);
    await until(() => s.connected);
    expect(server.last.received).toEqual([]);
  });

  it("start() rejects when the first login fails", async () => {
    const server = new FakeServer((message, conn) => conn.push(["rej", message[1], "NO"]));
    const s = session(server, { onConnect: (client: HeTuClient) => client.call("login", 1) });
    await expect(s.start()).rejects.toThrow(CallRejected);
    expect(s.connected).toBe(false);
  });

  it("close() ends the subscriptions and later calls reject", async () => {
    const { server } = boardServer();
    const s = session(server);
    await s.start();
    const live = (await s.range("Board", "owner", 1, 1))!;
    await s.close();
    expect(live.closed).toBe(true);
    await expect(s.call("post")).rejects.toThrow(/session is closed/);
  });

  it("unsubscribing a session's subscription keeps it from being restored", async () => {
    const { server } = boardServer();
    const s = session(server);
    await s.start();
    const live = (await s.range("Board", "owner", 1, 1))!;
    await live.unsubscribe();
    server.dropAll();
    await until(() => s.connections === 2);
    expect(server.last.received).toEqual([]);
  });
});
