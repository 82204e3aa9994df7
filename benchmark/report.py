"""Printing results as tables, and writing them as JSON."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
from typing import Any

from .load import LoadResult
from .memory import MemoryResult
from .push import PushResult

LABELS = {"echo": "echo (Sanic ws)", "redis": "redis PING", "floor1": "floor: 1 trip", "floor2": "floor: 2 trips"}


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def machine_line(info: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    return f"{info['date']}, {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, load average {load}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _races(races: dict[int, int]) -> str:
    return " ".join(f"{count}:{calls}" for count, calls in races.items()) or "-"


def load_table(results: list[LoadResult]) -> str:
    head = (f"{'workload':<16}{'conns':>6}{'procs':>6}{'calls/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
            f"{'p99 ms':>9}{'x echo':>8}{'trips':>7}{'cmds':>7}{'errors':>7}"
            f"{'cpu cli':>8}{'srv':>6}{'redis':>6}{'other':>6}  retries (race_count:calls)")
    lines = [head, "-" * len(head)]
    for r in results:
        ms = r.latencies_ms
        lines.append(
            f"{LABELS.get(r.workload, r.workload):<16}{r.connections:>6}{r.processes:>6}{r.rate:>10.0f}"
            f"{ms['p50']:>9.3f}{ms['p90']:>9.3f}{ms['p99']:>9.3f}{_num(r.ratio_to_echo, '.3f'):>8}"
            f"{_num(r.round_trips_per_call, '.2f'):>7}{_num(r.commands_per_call, '.2f'):>7}{r.errors:>7}"
            f"{r.client_cpu:>8.2f}{_num(r.server_cpu.get('server'), '.2f'):>6}"
            f"{_num(r.server_cpu.get('redis'), '.2f'):>6}{r.other_cpu:>6.2f}  {_races(r.races)}"
        )
    for r in results:
        if r.first_error:
            lines.append(f"! {r.workload} x{r.connections}: {r.errors} connection(s) failed, first: {r.first_error}")
    return "\n".join(lines)


def background_note(trips_per_s: float, commands_per_s: float) -> str:
    return (f"Redis background while idle: {trips_per_s:.1f} round trips/s, {commands_per_s:.1f} commands/s "
            f"(worker-lease renewal, future-call poller); included in trips/cmds above, not subtracted.")


def push_table(r: PushResult) -> str:
    ms, call = r.latencies_ms, r.insert_call_ms
    cpu = "" if r.server_cpu_per_frame_us is None else f", server CPU {r.server_cpu_per_frame_us:.0f} us per push"
    if r.client_cpu_per_frame_us is not None:
        cpu += f", subscribers' CPU {r.client_cpu_per_frame_us:.0f} us per push"
    shape = {"insert": "IntTable range", "chat": f"chat room (newest 100 of {r.room_rows})",
             "room": f"room of {r.room_rows} rows"}[r.pattern]
    return "\n".join([
        f"push latency, {shape}, {r.subscribers} subscribers over {r.processes} processes, {r.inserts} inserts:",
        f"  rsp -> updt   p50 {ms['p50']:.2f} ms   p90 {ms['p90']:.2f} ms   p99 {ms['p99']:.2f} ms   "
        f"max {ms['max']:.2f} ms",
        f"  measured {r.measured} of {r.expected} pushes, missed {r.missed}{cpu}",
        f"  the writer's insert call: p50 {call['p50']:.2f} ms, p99 {call['p99']:.2f} ms",
    ] + ([f"  ! {r.failed_subscribers} subscribers could not subscribe, first: {r.first_failure}"]
         if r.failed_subscribers else [])
      + ([f"  ! the writer stopped after {r.inserted} of {r.inserts} inserts: {r.writer_error}"]
         if r.writer_error else []))


def memory_table(r: MemoryResult) -> str:
    lines = [
        f"memory, {r.connections} idle connections:",
        f"  server RSS {r.rss_before / 2**20:.1f} MiB -> {r.rss_after / 2**20:.1f} MiB: "
        f"{r.per_connection / 1024:.1f} KiB per connection",
    ]
    if r.redis_clients_before is not None:
        lines.append(f"  Redis connected clients: {r.redis_clients_before} -> {r.redis_clients_after}")
    return "\n".join(lines)


def inproc_table(results: list[dict[str, Any]]) -> str:
    """The in-process measurement: calls/s and the process's CPU per call."""
    lines = ["| workload | tasks | calls/s | CPU per call | of it user | of it kernel |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['workload']} | {r['tasks']} | {r['calls_per_s']:.0f} | {r['cpu_us_per_call']:.1f} µs "
                     f"| {r['user_us_per_call']:.1f} µs | {r['system_us_per_call']:.1f} µs |")
    return "\n".join(lines)


def write_json(path: str, report: dict[str, Any]) -> None:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            fields = dataclasses.asdict(value)
            extra = {name: getattr(value, name) for name in ("rate", "per_connection", "expected")
                     if hasattr(value, name)}
            return fields | extra
        return str(value)

    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=plain)
