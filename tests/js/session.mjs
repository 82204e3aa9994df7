// HeTuSession through a server restart. Args: url. Prints "ready" with its two rows,
// "disconnected" when the server is gone (then makes a call that has to wait), and the
// result once the call went through and the range shows what changed meanwhile.
import { AUTH_KEY, HeTuSession, emit, run, until } from "./harness.mjs";

run(async ([url]) => {
  const logins = [];
  const session = new HeTuSession(url, {
    authKey: AUTH_KEY,
    onConnect: async (client) => logins.push(await client.call("login", 801)),
    minDelayMs: 50,
    maxDelayMs: 300,
  });
  await session.start();
  const live = await session.range("Board", "owner", 800, 800, { limit: 10 });
  const kept = await session.call("post", 800, 1, "kept");
  const doomed = await session.call("post", 800, 2, "doomed");
  await until(() => live.rows.has(kept) && live.rows.has(doomed));
  const changes = [];
  live.onInsert((row) => changes.push(["insert", row.note]));
  live.onDelete((old) => changes.push(["delete", old.note]));
  emit("ready", { kept, doomed, connections: session.connections, logins });

  if (!(await until(() => !session.connected, 10_000))) throw new Error("the session never noticed the server stop");
  emit("disconnected");
  const queued = await session.call("post", 800, 3, "queued"); // waits for the reconnection
  const notes = () => [...live.rows.values()].map((row) => row.note).sort();
  await until(() => notes().join() === "kept,meanwhile,queued", 10_000);
  const restored = notes();
  const later = await session.call("post", 800, 5, "later");
  const laterSeen = await until(() => live.rows.has(later), 5_000);
  const result = {
    logins, connections: session.connections, notes: restored, changes, queued,
    queuedInRows: live.rows.has(queued), laterSeen, liveClosed: live.closed, subId: live.subId,
  };
  await session.close();
  result.liveClosedAfterClose = live.closed;
  return result;
});
