"""Closed-loop load: N connections each call, wait for the reply, and call again, for T seconds.

The same loop drives the HeTu workloads and both baselines; only the call differs:

* a HeTu workload: ``HeTuClient.call(workload, *args)`` (the full default pipeline:
  msgpack, zlib, crypto);
* ``echo``: one msgpack-encoded ``["rpc", "hello_world"]`` frame to the bare Sanic echo
  server, and the echoed frame decoded;
* ``redis``: ``PING`` over redis.asyncio, one connection per simulated client;
* ``floor1``/``floor2`` (``run --floors``): the echo frame, answered after 1 or 2 Redis
  round trips (benchmark/echo.py): what a call needing that many round trips costs on
  this transport and Redis client without the engine.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import msgpack
import redis.asyncio as aioredis
import websockets

from hetu.client import HeTuClient

from .procs import ClientProcesses, split
from .redisstats import RedisProbe
from .servers import cpu_seconds, machine_cpu_seconds

WORKLOADS = ("hello_world", "just_get", "just_get_user", "upsert", "exchange_data")
# workload -> the endpoint it calls, when the names differ
ENDPOINTS = {"just_get_user": "just_get"}
# workloads whose connections log in (each as a user of its own) before they call
LOGGED_IN = ("just_get_user",)
BASELINES = ("echo", "redis")
# floors (``run --floors``): the echo answered after 1 or 2 Redis round trips
FLOORS = ("floor1", "floor2")
CONNECT_CONCURRENCY = 50


def workload_args(workload: str, keys: int) -> tuple:
    """Arguments of one call: random keys among ``keys`` rows / names."""
    if workload in ("just_get", "just_get_user"):
        return (random.randrange(keys),)
    if workload == "upsert":
        return (f"k{random.randrange(keys)}",)
    if workload == "exchange_data":
        return (random.randrange(keys), f"k{random.randrange(keys)}")
    return ()


class HetuDriver:
    def __init__(self, url: str, auth_key: str | None, workload: str, keys: int) -> None:
        self.url, self.auth_key, self.workload, self.keys = url, auth_key, workload, keys
        self.client: HeTuClient | None = None

    async def open(self) -> None:
        self.client = await HeTuClient.connect(self.url, auth_key=self.auth_key)
        if self.workload in LOGGED_IN:
            ok, reason = await self.client.call("login", random.getrandbits(48) + 1)
            if not ok:
                raise RuntimeError(f"the benchmark's login failed: {reason}")

    async def call(self) -> int | None:
        endpoint = ENDPOINTS.get(self.workload, self.workload)
        reply = await self.client.call(endpoint, *workload_args(self.workload, self.keys))
        return reply[0] if self.workload != "hello_world" else None

    async def close(self) -> None:
        await self.client.close()


class EchoDriver:
    FRAME = ["rpc", "hello_world"]

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws = None

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, max_size=None)

    async def call(self) -> None:
        await self.ws.send(msgpack.packb(self.FRAME))
        msgpack.unpackb(await self.ws.recv())

    async def close(self) -> None:
        await self.ws.close()


class RedisDriver:
    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url, single_connection_client=True)

    async def open(self) -> None:
        await self.redis.ping()

    async def call(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass
class LoadSpec:
    workload: str  # one of WORKLOADS or BASELINES
    url: str
    connections: int
    duration: float
    keys: int = 1000
    auth_key: str | None = None

    def driver(self):
        if self.workload == "echo" or self.workload in FLOORS:
            return EchoDriver(self.url)
        if self.workload == "redis":
            return RedisDriver(self.url)
        return HetuDriver(self.url, self.auth_key, self.workload, self.keys)


@dataclass
class ProcessResult:
    latencies: list[float] = field(default_factory=list)  # seconds
    races: Counter = field(default_factory=Counter)
    errors: int = 0
    first_error: str = ""
    end: float = 0.0
    cpu_seconds: float = 0.0  # this client process's, during the window


async def _loop(driver, deadline: float, out: ProcessResult) -> None:
    clock = time.monotonic
    while clock() < deadline:
        began = clock()
        try:
            race = await driver.call()
        except Exception as exc:  # a dropped connection ends this client's loop
            out.errors += 1
            out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
            return
        out.latencies.append(clock() - began)
        if race is not None:
            out.races[race] += 1


async def load_process(spec: LoadSpec, gate) -> ProcessResult:
    """One client process: ``spec.connections`` connections in closed loops."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    drivers = [spec.driver() for _ in range(spec.connections)]

    async def open_and_warm(driver) -> None:
        async with limit:
            await driver.open()
        await driver.call()

    await asyncio.gather(*(open_and_warm(d) for d in drivers))
    start = await gate.ready()
    out = ProcessResult()
    cpu = time.process_time()
    await asyncio.gather(*(_loop(d, start + spec.duration, out) for d in drivers))
    out.end = time.monotonic()
    out.cpu_seconds = time.process_time() - cpu
    await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)
    return out


@dataclass
class LoadResult:
    workload: str
    connections: int
    processes: int
    calls: int
    seconds: float
    latencies_ms: dict[str, float]
    races: dict[int, int]
    errors: int
    first_error: str = ""
    round_trips_per_call: float | None = None
    commands_per_call: float | None = None
    commands: dict[str, int] = field(default_factory=dict)
    ratio_to_echo: float | None = None
    # CPU use during the window, in cores (1.0 = one core busy all the time)
    client_cpu: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)
    other_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99)}


def run_load(spec: LoadSpec, processes: int, redis_url: str | None = None,
             watch: dict[str, int] | None = None) -> LoadResult:
    """Run ``spec.connections`` connections over ``processes`` client processes.

    ``watch``: server processes (name -> pid) whose CPU use to report.
    """
    watch = {name: pid for name, pid in (watch or {}).items() if pid}
    sizes = split(spec.connections, processes)
    specs = [LoadSpec(spec.workload, spec.url, n, spec.duration, spec.keys, spec.auth_key) for n in sizes]
    probe = RedisProbe(redis_url) if redis_url else None
    try:
        with ClientProcesses(load_process, specs) as group:
            group.wait_ready()
            before = probe.snapshot() if probe else None
            cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
            machine_before, watched_from = machine_cpu_seconds(), time.monotonic()
            start = group.go()
            parts: list[ProcessResult] = group.results(timeout=spec.duration + 120)
            cpu_after = {name: cpu_seconds(pid) for name, pid in watch.items()}
            machine, watched = machine_cpu_seconds() - machine_before, time.monotonic() - watched_from
            delta = probe.delta(before, probe.snapshot()) if probe else None
    finally:
        if probe:
            probe.close()
    latencies = [x for part in parts for x in part.latencies]
    races = sum((part.races for part in parts), Counter())
    result = LoadResult(
        workload=spec.workload,
        connections=spec.connections,
        processes=len(sizes),
        calls=len(latencies),
        seconds=max(part.end for part in parts) - start,
        latencies_ms=percentiles_ms(latencies),
        races=dict(sorted(races.items())),
        errors=sum(part.errors for part in parts),
        first_error=next((part.first_error for part in parts if part.first_error), ""),
    )
    result.client_cpu = sum(part.cpu_seconds for part in parts) / result.seconds
    result.server_cpu = {name: (cpu_after[name] - cpu_before[name]) / watched for name in watch}
    # whatever else ran on the machine meanwhile (client processes outside their loop included)
    result.other_cpu = max(0.0, machine / watched - result.client_cpu - sum(result.server_cpu.values()))
    if delta is not None and result.calls:
        result.round_trips_per_call = delta.round_trips / result.calls
        result.commands_per_call = delta.total_commands / result.calls
        result.commands = delta.commands
    return result


async def seed_rows(url: str, auth_key: str | None, keys: int, batch: int = 500) -> None:
    """Make IntTable rows 0..keys-1 exist, so ``just_get`` finds what it asks for."""
    client = await HeTuClient.connect(url, auth_key=auth_key)
    try:
        for start in range(0, keys, batch):
            await client.call("seed", start, min(batch, keys - start))
    finally:
        await client.close()
