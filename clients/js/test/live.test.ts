// LiveRow and LiveRange: pushes become insert/update/delete changes for callbacks and loops.

import { describe, expect, it, vi } from "vitest";
import { LiveRange, LiveRow, type Change, type LiveSubscription, type Row } from "../src/live.js";

const owner = {
  unsubscribed: [] as LiveSubscription<unknown>[],
  async unsubscribeLive(live: LiveSubscription<unknown>) {
    this.unsubscribed.push(live);
    live._end();
  },
};

const BIG = 7390000000000000001n;

function range(rows: Row[], index = "score", desc = false): LiveRange {
  return new LiveRange(owner, ["sub", "Board", "range", index, 0, 100, 10, desc, true], rows);
}

function collect(live: LiveSubscription<Row>): string[] {
  const seen: string[] = [];
  live.onInsert((row) => seen.push(`insert ${row.note}`));
  live.onUpdate((row, old) => seen.push(`update ${old.note}->${row.note}`));
  live.onDelete((old) => seen.push(`delete ${old.note}`));
  return seen;
}

describe("LiveRange", () => {
  it("maps ids to rows, bigint ids included", () => {
    const live = range([{ id: BIG, score: 1, note: "a" }, { id: 2, score: 2, note: "b" }]);
    expect(live.rows.get(BIG)).toEqual({ id: BIG, score: 1, note: "a" });
    expect(live.rows.get(2)?.note).toBe("b");
    expect(live.size).toBe(2);
  });

  it("turns a push into inserts, updates and deletes", () => {
    const live = range([{ id: BIG, score: 1, note: "a" }, { id: 2, score: 2, note: "b" }]);
    const seen = collect(live);
    live._apply({ [BIG.toString()]: { id: BIG, score: 1, note: "a2" }, "2": null, "3": { id: 3, score: 3, note: "c" } });
    expect(seen.sort()).toEqual(["delete b", "insert c", "update a->a2"]);
    expect([...live.rows.keys()].sort()).toEqual([3, BIG]);
  });

  it("ignores a push that changes nothing, and nil for an unknown id", () => {
    const live = range([{ id: 1, score: 1, note: "a" }]);
    const seen = collect(live);
    live._apply({ "1": { id: 1, score: 1, note: "a" }, "9": null });
    expect(seen).toEqual([]);
  });

  it("lists rows in index order, ties by id, reversed when descending", () => {
    const rows = [
      { id: BIG, score: 2, note: "big" },
      { id: 5, score: 2, note: "five" },
      { id: 9, score: 1, note: "nine" },
    ];
    expect(range(rows).rowsList().map((r) => r.note)).toEqual(["nine", "five", "big"]);
    expect(range(rows, "score", true).rowsList().map((r) => r.note)).toEqual(["big", "five", "nine"]);
    expect(range(rows, "id").rowsList().map((r) => r.note)).toEqual(["five", "nine", "big"]);
  });

  it("emits the differences when given a fresh result", () => {
    const live = range([{ id: 1, score: 1, note: "kept" }, { id: 2, score: 2, note: "doomed" }]);
    const seen = collect(live);
    live._replace([{ id: 1, score: 1, note: "kept" }, { id: 3, score: 3, note: "new" }]);
    expect(seen.sort()).toEqual(["delete doomed", "insert new"]);
  });

  it("drops _version from rows", () => {
    const live = range([{ id: 1, score: 1, _version: 4 }]);
    expect(live.rows.get(1)).toEqual({ id: 1, score: 1 });
  });
});

describe("LiveRow", () => {
  const row = (note: string) => ({ id: BIG, owner: 7, note });
  const make = (data: Row | null) => new LiveRow(owner, ["sub", "Board", "get", "owner", 7], data);

  it("follows the row through update, delete and return", () => {
    const live = make({ ...row("a"), _version: 1 });
    const seen = collect(live);
    expect(live.row).toEqual(row("a"));
    live._apply({ [BIG.toString()]: row("a") }); // only _version differed: no change
    live._apply({ [BIG.toString()]: row("b") });
    live._apply({ [BIG.toString()]: null });
    expect(live.row).toBeNull();
    live._replace(row("c"));
    expect(seen).toEqual(["update a->b", "delete b", "insert c"]);
  });

  it("subscribes again by id once the row is known", () => {
    expect(make(row("a"))._restoreRequest()).toEqual(["sub", "Board", "get", "id", BIG]);
    expect(make(null)._restoreRequest()).toEqual(["sub", "Board", "get", "owner", 7]);
  });
});

describe("callbacks and loops", () => {
  it("a callback can be removed with the function it returned", () => {
    const live = range([]);
    const seen: unknown[] = [];
    const stop = live.onInsert((r) => seen.push(r.id));
    live._apply({ "1": { id: 1, score: 1 } });
    stop();
    live._apply({ "2": { id: 2, score: 1 } });
    expect(seen).toEqual([1]);
  });

  it("a failing callback is reported and the others still run", async () => {
    const report = vi.spyOn(console, "error").mockImplementation(() => {});
    const live = range([]);
    const seen: unknown[] = [];
    live.onInsert(() => {
      throw new Error("boom");
    });
    live.onInsert(async () => {
      throw new Error("async boom");
    });
    live.onInsert((r) => seen.push(r.id));
    live._apply({ "1": { id: 1, score: 1 } });
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(seen).toEqual([1]);
    expect(report).toHaveBeenCalledTimes(2);
    report.mockRestore();
  });

  it("for await yields every change until the subscription ends", async () => {
    const live = range([{ id: 1, score: 1, note: "a" }]);
    const changes: Change[] = [];
    const loop = (async () => {
      for await (const change of live) changes.push(change);
    })();
    live._apply({ "2": { id: 2, score: 1, note: "b" } });
    live._apply({ "1": null });
    await live.unsubscribe();
    await loop;
    expect(changes.map((c) => [c.kind, c.id])).toEqual([["insert", 2], ["delete", 1]]);
    expect(changes[1]!.old).toEqual({ id: 1, score: 1, note: "a" });
    expect(changes[1]!.row).toBeNull();
    expect(owner.unsubscribed).toContain(live);
  });

  it("breaking out of a loop stops its queue only", async () => {
    const live = range([]);
    const first: Change[] = [];
    const second: Change[] = [];
    const breaking = (async () => {
      for await (const change of live) {
        first.push(change);
        break;
      }
    })();
    const staying = (async () => {
      for await (const change of live) second.push(change);
    })();
    live._apply({ "1": { id: 1, score: 1 } });
    await breaking;
    live._apply({ "2": { id: 2, score: 1 } });
    live._end();
    await staying;
    expect(first.map((c) => c.id)).toEqual([1]);
    expect(second.map((c) => c.id)).toEqual([1, 2]);
  });

  it("a loop over an ended subscription ends at once", async () => {
    const live = range([]);
    live._end();
    for await (const change of live) throw new Error(`unexpected ${change.kind}`);
    expect(live.closed).toBe(true);
  });
});
