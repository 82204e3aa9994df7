"""Push latency: K subscribers on one range, one writer inserting rows into it.

For each insert, for every subscriber: the time from the writer receiving the ``rsp`` of
the insert to the subscriber receiving the ``updt`` that carries the row. Both are
``time.monotonic()`` readings taken right after the client library hands the frame over
(after its decoding), in different processes.

Patterns (``--pattern``):

* ``insert``: a range of IntTable.number with room for every inserted row.
* ``chat``: a chat room, the newest 100 messages of a 200-message table (a descending
  range on ``id``, limit 100): every insert enters the full window and pushes the
  oldest message out.
* ``room``: every message of one room (a range on the ``room`` index) with
  ``--room-rows`` messages in it beforehand: the cost of a push must not grow with the
  size of the range.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from hetu.client import HeTuClient

from .load import CONNECT_CONCURRENCY, percentiles_ms
from .procs import ClientProcesses, split
from .servers import cpu_seconds

SPAN = 10**9  # the subscribed range: [base, base + SPAN]
GRACE_SECONDS = 5.0  # how long subscribers keep waiting after the writer's last rsp
PATTERNS = ("insert", "chat", "room")
CHAT_ROWS, CHAT_WINDOW = 200, 100
FILL_BATCH = 500
INT64_MAX = 2**63 - 1


@dataclass
class Query:
    """What every subscriber subscribes to, and the field that names an inserted row."""

    component: str
    index: str
    left: int
    right: int
    limit: int
    desc: bool
    field: str


@dataclass
class SubscriberSpec:
    url: str
    auth_key: str | None
    subscribers: int
    query: Query
    expected: list[int]  # the values of query.field whose arrival is timed


async def _subscriber(client: HeTuClient, spec: SubscriberSpec, gate) -> dict[int, float]:
    waiting = set(spec.expected)
    arrived: dict[int, float] = {}
    while waiting and not gate.stopped():
        update = await client.next_update(timeout=0.2)
        if update is None:
            if client.closed:  # the server dropped this subscriber: the rest is missed
                break
            continue
        now = time.monotonic()
        for row in update[1].values():
            value = None if row is None else row.get(spec.query.field)
            if value in waiting:
                waiting.discard(value)
                arrived[value] = now
    return arrived


async def subscriber_process(spec: SubscriberSpec, gate) -> tuple[list[dict[int, float]], list[str], float]:
    """Arrival times per subscriber, why subscribers that could not subscribe failed, and
    the CPU seconds this process used while the pushes came (receiving and decoding them)."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> HeTuClient:
        async with limit:
            client = await HeTuClient.connect(spec.url, auth_key=spec.auth_key)
        q = spec.query
        sub_id, _ = await client.subscribe_range(q.component, q.index, q.left, q.right, q.limit, desc=q.desc)
        if sub_id is None:
            raise RuntimeError(f"the server refused the {q.component} range subscription")
        return client

    outcomes = await asyncio.gather(*(connect() for _ in range(spec.subscribers)), return_exceptions=True)
    clients = [c for c in outcomes if isinstance(c, HeTuClient)]
    failures = [f"{type(e).__name__}: {e}" for e in outcomes if not isinstance(e, HeTuClient)]
    await gate.ready()
    cpu = time.process_time()
    arrivals = await asyncio.gather(*(_subscriber(c, spec, gate) for c in clients))
    cpu = time.process_time() - cpu
    gate.finished()  # the server's CPU is read now, before the connections close
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return arrivals, failures, cpu


@dataclass
class PushResult:
    subscribers: int
    processes: int
    inserts: int  # planned
    inserted: int  # acknowledged by an rsp; only these are expected to be pushed
    pattern: str = "insert"
    room_rows: int = 0  # the rows in the subscribed range before the inserts (room, chat)
    server_cpu_per_frame_us: float | None = None  # server CPU during the inserts / pushes received
    client_cpu_per_frame_us: float | None = None  # subscriber processes' CPU meanwhile / pushes received
    measured: int = 0
    missed: int = 0
    latencies_ms: dict[str, float] = field(default_factory=dict)
    insert_call_ms: dict[str, float] = field(default_factory=dict)
    failed_subscribers: int = 0  # could not connect or subscribe; their pushes count as missed
    first_failure: str = ""
    writer_error: str = ""

    @property
    def expected(self) -> int:
        return self.subscribers * self.inserted


async def _write(url: str, auth_key: str | None, calls: list[tuple], interval: float,
                 start: float) -> tuple[dict[int, float], list[float], str]:
    """Insert ``numbers`` one by one; return when each ``rsp`` arrived, the call times,
    and why the writer stopped early (when it did: the server can drop it)."""
    client = await HeTuClient.connect(url, auth_key=auth_key)
    replied: dict[int, float] = {}
    times: list[float] = []
    error = ""
    await asyncio.sleep(max(0.0, start - time.monotonic()) + interval)  # subscribers listen
    try:
        for name, *args in calls:
            began = time.monotonic()
            await client.call(name, *args)
            replied[args[-1]] = time.monotonic()
            times.append(replied[args[-1]] - began)
            await asyncio.sleep(interval)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()
    return replied, times, error


async def _fill(url: str, auth_key: str | None, room: int, start: int, count: int) -> int:
    """Put ``count`` messages into ``room``; the smallest id inserted."""
    client = await HeTuClient.connect(url, auth_key=auth_key)
    first = INT64_MAX
    try:
        for offset in range(0, count, FILL_BATCH):
            (row_id,) = await client.call("fill_room", room, start + offset, min(FILL_BATCH, count - offset))
            first = min(first, row_id)
    finally:
        await client.close()
    return first


def plan(url: str, auth_key: str | None, pattern: str, inserts: int, room_rows: int) -> tuple[Query, list[tuple]]:
    """The subscription and the writer's calls of a pattern (filling the room first)."""
    base = 10**12 + time.time_ns() // 1000  # above every earlier run's rows: they stay out
    values = [base + 1 + i for i in range(inserts)]
    if pattern == "insert":
        # every inserted row stays inside the subscription: a row that had already left
        # the window when a coalesced push was computed would rightly never be sent
        query = Query("IntTable", "number", base, base + SPAN, inserts + 1, True, "number")
        return query, [("insert_int", v) for v in values]
    room = base
    if pattern == "chat":
        first_id = asyncio.run(_fill(url, auth_key, room, base - CHAT_ROWS, CHAT_ROWS))
        query = Query("Message", "id", first_id, INT64_MAX, CHAT_WINDOW, True, "seq")
    else:
        if room_rows:
            asyncio.run(_fill(url, auth_key, room, base - room_rows, room_rows))
        query = Query("Message", "room", room, room, room_rows + inserts + 1, False, "seq")
    return query, [("insert_message", room, v) for v in values]


def run_push(url: str, auth_key: str | None, subscribers: int, processes: int,
             inserts: int = 50, interval: float = 0.1, pattern: str = "insert", room_rows: int = 0,
             server_pid: int | None = None) -> PushResult:
    """One writer, ``subscribers`` subscriber connections over ``processes`` processes."""
    query, calls = plan(url, auth_key, pattern, inserts, room_rows)
    values = [args[-1] for _, *args in calls]
    sizes = split(subscribers, processes)
    specs = [SubscriberSpec(url, auth_key, n, query, values) for n in sizes]
    with ClientProcesses(subscriber_process, specs) as group:
        group.wait_ready()
        start = group.go()
        cpu_before = cpu_seconds(server_pid) if server_pid else None
        replied, calls_ms, writer_error = asyncio.run(_write(url, auth_key, calls, interval, start))
        group.stop_at(time.monotonic() + GRACE_SECONDS)
        group.wait_finished(timeout=GRACE_SECONDS + 60)
        cpu = cpu_seconds(server_pid) - cpu_before if server_pid else None
        parts = group.results(timeout=60)
    latencies = [
        arrived[number] - replied[number]
        for arrivals, _, _ in parts for arrived in arrivals for number in arrived if number in replied
    ]
    failures = [failure for _, failed, _ in parts for failure in failed]
    client_cpu = sum(cpu for _, _, cpu in parts)
    return PushResult(
        subscribers=subscribers, processes=len(sizes), inserts=inserts,
        inserted=len(replied), writer_error=writer_error, pattern=pattern,
        room_rows=CHAT_ROWS if pattern == "chat" else room_rows,
        server_cpu_per_frame_us=cpu / len(latencies) * 1e6 if cpu is not None and latencies else None,
        client_cpu_per_frame_us=client_cpu / len(latencies) * 1e6 if latencies else None,
        measured=len(latencies), missed=subscribers * len(replied) - len(latencies),
        latencies_ms=percentiles_ms(latencies) | {"max": max(latencies, default=float("nan")) * 1000},
        insert_call_ms=percentiles_ms(calls_ms),
        failed_subscribers=len(failures), first_failure=failures[0] if failures else "",
    )
