"""Push latency: K subscribers on one range of IntTable, one writer inserting rows into it.

For each insert, for every subscriber: the time from the writer receiving the ``rsp`` of
``insert_int`` to the subscriber receiving the ``updt`` that carries the row. Both are
``time.monotonic()`` readings taken right after the client library hands the frame over
(after its decoding), in different processes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from hetu.client import HeTuClient

from .load import CONNECT_CONCURRENCY, percentiles_ms
from .procs import ClientProcesses, split

SPAN = 10**9  # the subscribed range: [base, base + SPAN]
GRACE_SECONDS = 5.0  # how long subscribers keep waiting after the writer's last rsp


@dataclass
class SubscriberSpec:
    url: str
    auth_key: str | None
    subscribers: int
    base: int
    expected: list[int]  # the numbers whose arrival is timed

    @property
    def limit(self) -> int:
        # every inserted row stays inside the subscription: a row that had already left
        # the window when a coalesced push was computed would rightly never be sent
        return len(self.expected) + 1


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
            if row is not None and row["number"] in waiting:
                waiting.discard(row["number"])
                arrived[row["number"]] = now
    return arrived


async def subscriber_process(spec: SubscriberSpec, gate) -> tuple[list[dict[int, float]], list[str]]:
    """Arrival times per subscriber, and why subscribers that could not subscribe failed."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> HeTuClient:
        async with limit:
            client = await HeTuClient.connect(spec.url, auth_key=spec.auth_key)
        sub_id, _ = await client.subscribe_range(
            "IntTable", "number", spec.base, spec.base + SPAN, spec.limit, desc=True)
        if sub_id is None:
            raise RuntimeError("the server refused the IntTable range subscription")
        return client

    outcomes = await asyncio.gather(*(connect() for _ in range(spec.subscribers)), return_exceptions=True)
    clients = [c for c in outcomes if isinstance(c, HeTuClient)]
    failures = [f"{type(e).__name__}: {e}" for e in outcomes if not isinstance(e, HeTuClient)]
    await gate.ready()
    arrivals = await asyncio.gather(*(_subscriber(c, spec, gate) for c in clients))
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return arrivals, failures


@dataclass
class PushResult:
    subscribers: int
    processes: int
    inserts: int  # planned
    inserted: int  # acknowledged by an rsp; only these are expected to be pushed
    measured: int
    missed: int
    latencies_ms: dict[str, float]
    insert_call_ms: dict[str, float] = field(default_factory=dict)
    failed_subscribers: int = 0  # could not connect or subscribe; their pushes count as missed
    first_failure: str = ""
    writer_error: str = ""

    @property
    def expected(self) -> int:
        return self.subscribers * self.inserted


async def _write(url: str, auth_key: str | None, numbers: list[int], interval: float,
                 start: float) -> tuple[dict[int, float], list[float], str]:
    """Insert ``numbers`` one by one; return when each ``rsp`` arrived, the call times,
    and why the writer stopped early (when it did: the server can drop it)."""
    client = await HeTuClient.connect(url, auth_key=auth_key)
    replied: dict[int, float] = {}
    calls: list[float] = []
    error = ""
    await asyncio.sleep(max(0.0, start - time.monotonic()) + interval)  # subscribers listen
    try:
        for number in numbers:
            began = time.monotonic()
            await client.call("insert_int", number)
            replied[number] = time.monotonic()
            calls.append(replied[number] - began)
            await asyncio.sleep(interval)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()
    return replied, calls, error


def run_push(url: str, auth_key: str | None, subscribers: int, processes: int,
             inserts: int = 50, interval: float = 0.1) -> PushResult:
    """One writer, ``subscribers`` subscriber connections over ``processes`` processes."""
    base = 10**12 + time.time_ns() // 1000  # above every earlier run's rows: they stay out
    numbers = [base + 1 + i for i in range(inserts)]
    sizes = split(subscribers, processes)
    specs = [SubscriberSpec(url, auth_key, n, base, numbers) for n in sizes]
    with ClientProcesses(subscriber_process, specs) as group:
        group.wait_ready()
        start = group.go()
        replied, calls, writer_error = asyncio.run(_write(url, auth_key, numbers, interval, start))
        group.stop_at(time.monotonic() + GRACE_SECONDS)
        parts = group.results(timeout=GRACE_SECONDS + 60)
    latencies = [
        arrived[number] - replied[number]
        for arrivals, _ in parts for arrived in arrivals for number in arrived if number in replied
    ]
    failures = [failure for _, failed in parts for failure in failed]
    return PushResult(
        subscribers=subscribers, processes=len(sizes), inserts=inserts,
        inserted=len(replied), writer_error=writer_error,
        measured=len(latencies), missed=subscribers * len(replied) - len(latencies),
        latencies_ms=percentiles_ms(latencies) | {"max": max(latencies, default=float("nan")) * 1000},
        insert_call_ms=percentiles_ms(calls),
        failed_subscribers=len(failures), first_failure=failures[0] if failures else "",
    )
