"""HeTu's benchmark workloads, measured next to a websocket echo and a Redis round trip.

Usage: ``python -m benchmark {run,push,memory,all} [options]``. Without ``--url`` every server is started here on free loopback ports (Redis, a HeTu
server with benchmark/app.py, the Sanic echo server) and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path

from . import report
from .inproc import run_inproc
from .load import BASELINES, FLOORS, WORKLOADS, LoadSpec, run_load, seed_rows
from .memory import run_memory
from .push import PATTERNS, run_push
from .redisstats import RedisProbe
from .scrape import Scraper
from .servers import Stack

CONNECTIONS_PER_PROCESS = 8  # see docs/benchmarks.md: where one client process stops keeping up
MAX_LOAD_PROCESSES = 4
SUBSCRIBERS_PER_PROCESS = 250


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive integers")
    return values


def _workloads(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    return names


def load_processes(connections: int, requested: int | None) -> int:
    if requested:
        return min(requested, connections)
    return min(MAX_LOAD_PROCESSES, math.ceil(connections / CONNECTIONS_PER_PROCESS))


def command_run(args, stack: Stack) -> dict:
    if {"just_get", "just_get_user"} & set(args.workloads):
        asyncio.run(seed_rows(stack.hetu_url, args.auth_key, args.keys))
    background = None
    if stack.server_redis_url:
        probe = RedisProbe(stack.server_redis_url)
        background = probe.idle_rates(args.idle_seconds)
        probe.close()
    results = []
    for n in args.connections:
        procs = load_processes(n, args.procs)
        echo = run_load(LoadSpec("echo", stack.echo_url, n, args.duration), procs,
                        watch={"server": stack.echo_pid})
        rows = [echo, run_load(LoadSpec("redis", stack.redis_url, n, args.duration), procs, stack.redis_url,
                               watch={"redis": stack.redis_pid})]
        if args.floors and stack.floor_url:
            for trips, floor in enumerate(FLOORS, start=1):
                rows.append(run_load(LoadSpec(floor, f"{stack.floor_url}{trips}", n, args.duration), procs,
                                     stack.redis_url, watch={"server": stack.echo_pid, "redis": stack.redis_pid}))
        for workload in args.workloads:
            spec = LoadSpec(workload, stack.hetu_url, n, args.duration, args.keys, args.auth_key)
            rows.append(run_load(spec, procs, stack.server_redis_url,
                                 watch={"server": stack.server_pid, "redis": stack.redis_pid}))
        for row in rows:
            row.ratio_to_echo = row.rate / echo.rate if echo.rate else None
        results.extend(rows)
    print(report.load_table(results))
    if background:
        print(report.background_note(*background))
    elif stack.server_redis_url is None:
        print("trips/cmds: not measured (pass --redis-url, the Redis the server at --url uses)")
    return {"load": results, "redis_background_per_s": background}


def command_push(args, stack: Stack) -> dict:
    results = []
    for subscribers in args.subscribers:
        procs = args.push_procs or math.ceil(subscribers / SUBSCRIBERS_PER_PROCESS)
        result = run_push(stack.hetu_url, args.auth_key, subscribers, procs, args.inserts, args.interval,
                          args.pattern, args.room_rows, stack.server_pid)
        print(report.push_table(result))
        results.append(result)
    return {"push": results if len(results) > 1 else results[0]}


def command_memory(args, stack: Stack) -> dict:
    pid = args.server_pid or stack.server_pid
    if pid is None:
        sys.exit("memory: pass --server-pid (the HeTu server's main process) with --url")
    result = run_memory(stack.hetu_url, args.auth_key, args.idle_connections, pid, stack.server_redis_url)
    print(report.memory_table(result))
    return {"memory": result}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="websocket URL of a running HeTu server serving benchmark/app.py "
                        "(e.g. ws://host:2466/hetu/bench); default: start one here")
    common.add_argument("--redis-url", help="the Redis that server uses, for trips/cmds per call "
                        "(default: the one started here; unknown with --url)")
    common.add_argument("--auth-key", default=None, help="the server's crypto auth key (default: none)")
    common.add_argument("--workers", type=int, default=1, help="WORKER_NUM of the server started here (default 1)")
    common.add_argument("--redis-max-connections", type=int, default=None,
                        help="max_connections of the started server's Redis pool, passed in its Redis URL "
                             "(default: HeTu's, a blocking pool of 256)")
    common.add_argument("--server-root", type=Path, default=None, metavar="DIR",
                        help="start the server from the hetu package of another checkout DIR (e.g. an older "
                             "version), with this checkout's client and workloads (default: this checkout)")
    common.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    common.add_argument("--metrics", action="store_true",
                        help="turn the started server's Prometheus metrics on (METRICS, on a loopback port of "
                             "its own); compare runs with and without it for their cost")
    common.add_argument("--scrape", metavar="FILE",
                        help="scrape the server's /metrics every second into FILE (JSON lines) for "
                             "benchmark/dashboard.py; implies --metrics (with --url: pass --metrics-url)")
    common.add_argument("--metrics-url", help="the /metrics URL of the server at --url, for --scrape")

    load = argparse.ArgumentParser(add_help=False)
    load.add_argument("--connections", type=_int_list, default=[1, 16],
                      help="comma-separated connection counts, one measurement each (default 1,16)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    load.add_argument("--workloads", type=_workloads, default=list(WORKLOADS),
                      help=f"comma-separated, from {','.join(WORKLOADS)} (default all); "
                           f"the baselines {' and '.join(BASELINES)} always run")
    load.add_argument("--floors", action="store_true",
                      help="also measure the floors: the echo answered after 1 and 2 Redis round trips, "
                           "without the engine (what a get and an upsert cannot beat on this stack)")
    load.add_argument("--keys", type=int, default=1000,
                      help="rows/names the calls pick from at random (default 1000)")
    load.add_argument("--procs", type=int, default=None,
                      help=f"client processes (default ceil(connections/{CONNECTIONS_PER_PROCESS}), "
                           f"at most {MAX_LOAD_PROCESSES})")
    load.add_argument("--idle-seconds", type=float, default=5.0,
                      help="seconds of idle Redis traffic measured before the run (default 5)")

    push = argparse.ArgumentParser(add_help=False)
    push.add_argument("--subscribers", type=_int_list, default=[1000],
                      help="comma-separated subscriber counts, one measurement each (default 1000)")
    push.add_argument("--pattern", choices=PATTERNS, default="insert",
                      help="insert: a range of IntTable with room for every insert (default); chat: the "
                           "newest 100 of 200 messages, descending on id; room: every message of one room")
    push.add_argument("--room-rows", type=int, default=0,
                      help="room pattern: messages in the room before the inserts (default 0)")
    push.add_argument("--push-procs", type=int, default=None,
                      help=f"subscriber processes (default ceil(subscribers/{SUBSCRIBERS_PER_PROCESS}))")
    push.add_argument("--inserts", type=int, default=50, help="rows the writer inserts (default 50)")
    push.add_argument("--interval", type=float, default=0.1, help="seconds between inserts (default 0.1)")

    memory = argparse.ArgumentParser(add_help=False)
    memory.add_argument("--idle-connections", type=int, default=1000, help="idle connections to open (default 1000)")
    memory.add_argument("--server-pid", type=int, default=None,
                        help="PID of the server's main process (needed with --url)")

    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common, load], help="calls/s and latency of each workload and baseline")
    sub.add_parser("push", parents=[common, push], help="latency from an insert's rsp to every subscriber's updt")
    sub.add_parser("memory", parents=[common, memory], help="server memory per idle connection")
    sub.add_parser("all", parents=[common, load, push, memory], help="run, memory and push, in that order, on one set of servers")
    inproc = sub.add_parser("inproc", help="the engine's CPU per call in-process, through the endpoint gateway "
                                           "without websocket or client (see benchmark/inproc.py)")
    inproc.add_argument("--workloads", type=_workloads, default=list(WORKLOADS),
                        help=f"comma-separated, from {','.join(WORKLOADS)} (default all)")
    inproc.add_argument("--tasks", type=_int_list, default=[1, 16],
                        help="comma-separated numbers of concurrent callers (default 1,16)")
    inproc.add_argument("--calls", type=int, default=20000, help="calls measured per workload (default 20000)")
    inproc.add_argument("--keys", type=int, default=1000, help="rows/names the calls pick from (default 1000)")
    inproc.add_argument("--profile", metavar="FILE", help="write a cProfile of each workload to FILE.<workload>")
    inproc.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    return parser


def command_inproc(args) -> None:
    results = run_inproc(args.workloads, args.calls, args.tasks, args.keys, args.profile)
    print(report.inproc_table(results))
    if args.json:
        report.write_json(args.json, {"machine": report.machine(), "inproc": results})


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "inproc":
        command_inproc(args)
        return
    commands = {"run": [command_run], "push": [command_push], "memory": [command_memory],
                # memory before push: push leaves freed memory and a grown Redis pool behind
                "all": [command_run, command_memory, command_push]}[args.command]
    results: dict = {"machine": report.machine(), "settings": vars(args)}
    print(report.machine_line(results["machine"]), end="\n\n")
    with Stack(args.url, args.redis_url, echo=command_run in commands, workers=args.workers,
               auth_key=args.auth_key, redis_max_connections=args.redis_max_connections,
               server_root=args.server_root, metrics=args.metrics or bool(args.scrape)) as stack:
        if args.metrics or args.scrape:
            print(f"metrics: {args.metrics_url or stack.metrics_url}")
        scraper = None
        if args.scrape:
            url = args.metrics_url or stack.metrics_url
            if url is None:
                sys.exit("--scrape: pass --metrics-url (the /metrics of the server at --url)")
            scraper = Scraper(url, args.scrape).start()
        try:
            for command in commands:
                results |= command(args, stack)
                print()
        finally:
            if scraper is not None:
                scraper.stop()
                print(f"{scraper.scrapes} scrapes written to {args.scrape}")
    if args.json:
        report.write_json(args.json, results)


if __name__ == "__main__":
    main()
