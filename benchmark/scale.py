"""1 vs 2 server processes on one Redis: ``python -m benchmark.scale [seconds]``.

Starts Redis and two ``hetu start`` servers (1 worker each) serving benchmark/app.py,
then for just_get and upsert measures 16 connections on one server, and 8 + 8
connections on the two servers at the same time, and prints both throughputs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from pathlib import Path

from .load import LoadSpec, run_load, seed_rows
from .servers import HetuProcess, RedisProcess


def main(seconds: float = 6.0) -> None:
    work = Path(tempfile.mkdtemp(prefix="hetu-scale-"))
    redis = RedisProcess(work)
    servers = []
    try:
        for name in ("a", "b"):
            (work / name).mkdir()
            servers.append(HetuProcess(work / name, redis.url))
        asyncio.run(seed_rows(servers[0].url, None, 1000))
        for workload in ("just_get", "upsert"):
            one = run_load(LoadSpec(workload, servers[0].url, 16, seconds), 2)
            both: dict[int, object] = {}

            def drive(i: int, workload=workload, both=both) -> None:
                both[i] = run_load(LoadSpec(workload, servers[i].url, 8, seconds), 1)

            threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            single = one.calls / one.seconds
            double = sum(r.calls / r.seconds for r in both.values())
            errors = one.errors + sum(r.errors for r in both.values())
            print(f"{workload}: 1 server {single:.0f} calls/s (p50 {one.latencies_ms['p50']:.2f} ms), "
                  f"2 servers {double:.0f} calls/s (p50 {both[0].latencies_ms['p50']:.2f} / "
                  f"{both[1].latencies_ms['p50']:.2f} ms): x{double / single:.2f}, errors {errors}")
    finally:
        for server in servers:
            server.stop()
        redis.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 6.0)
