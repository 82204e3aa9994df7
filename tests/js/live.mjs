// Live subscriptions fed by another client's writes. Args: url, owner, id of a row to watch.
// Prints a "change" event for every change the range and the row see; ends once the row
// is deleted and the range is empty.
import { AUTH_KEY, HeTuClient, emit, int64, run, until } from "./harness.mjs";

run(async ([url, owner, watchedId]) => {
  const client = await HeTuClient.connect(url, { authKey: AUTH_KEY });
  const range = await client.range("Board", "owner", Number(owner), Number(owner), { limit: 100 });
  const row = await client.get("Board", "id", int64(watchedId));
  const missing = await client.get("Board", "id", int64(BigInt(watchedId) + 1n));

  const report = (source) => ({
    insert: (r) => emit("change", { source, kind: "insert", id: r.id, row: r }),
    update: (r, old) => emit("change", { source, kind: "update", id: r.id, row: r, old }),
    delete: (old) => emit("change", { source, kind: "delete", id: old.id, old }),
  });
  for (const [live, name] of [[range, "range"], [row, "row"]]) {
    const on = report(name);
    live.onInsert(on.insert);
    live.onUpdate(on.update);
    live.onDelete(on.delete);
  }
  const removed = range.onInsert(() => emit("change", { source: "removed callback" }));
  removed();

  const iterated = [];
  const loop = (async () => {
    for await (const change of range) iterated.push([change.kind, change.id]);
  })();

  emit("ready", { subId: range.subId, rowSubId: row.subId, rows: range.rowsList(), row: row.row, missing });
  const done = await until(() => row.row === null && range.size === 0, 15_000);
  await range.unsubscribe();
  await loop;
  const result = { done, iterated, rangeClosed: range.closed, rowClosed: row.closed };
  await client.close();
  result.rowClosedAfterClose = row.closed;
  return result;
});
