"""The engine's own cost per call, in-process: no websocket, no client, no echo.

``python -m benchmark inproc`` serves benchmark/app.py from a Redis started here and
calls its endpoints through the same gateway a client's rpc passes
(``EndpointExecutor.execute``), one call at a time (``--tasks 1``) or from several
tasks at once. It prints, per workload, the process CPU time per call: the engine's
Python plus the Redis client's socket work, without the websocket, the codec layers or
the client. The Redis server runs in another process and is not counted. Far less noisy
than the end-to-end run, so a change of a few microseconds shows; ``--profile FILE``
writes a cProfile of the measured calls.
"""

from __future__ import annotations

import asyncio
import cProfile
import resource
import tempfile
import time
from pathlib import Path

from .load import workload_args
from .servers import RedisProcess

WORKLOADS = ("hello_world", "just_get", "just_get_user", "upsert", "exchange_data")


async def _measure(redis_url: str, workloads: list[str], calls: int, tasks: int, keys: int,
                   profile: str | None) -> list[dict]:
    import benchmark.app as app
    from hetu.endpoint.executor import EndpointExecutor
    from hetu.system.caller import SystemCaller
    from hetu.testing import Sandbox

    sandbox = await Sandbox.create(app.NS, app, db_url=redis_url, instance_name="bench")
    try:
        seeder = sandbox._context(0, None, admin=False)
        await seeder.systems.call("seed", 0, keys)
        results = []
        for workload in workloads:
            executors = []
            for i in range(tasks):
                ctx = sandbox._context(0, None, admin=False)
                ctx.systems = SystemCaller(app.NS, sandbox.tbl_mgr, ctx)
                executor = EndpointExecutor(app.NS, sandbox.tbl_mgr, ctx, login_watched=True)
                await executor.initialize(f"10.0.0.{i % 250}")
                if workload == "just_get_user":
                    ok, _ = await executor.execute("login", 1000 + i)
                    assert ok
                executors.append(executor)
            name = "just_get" if workload == "just_get_user" else workload
            per_task = max(1, calls // tasks)

            async def drive(executor, count: int, name: str = name) -> None:
                for _ in range(count):
                    ok, _ = await executor.execute(name, *workload_args(name, keys))
                    if not ok:
                        raise RuntimeError(f"{name} failed")

            await asyncio.gather(*(drive(e, 200) for e in executors))  # warm up
            prof = cProfile.Profile() if profile else None
            wall0, use0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            if prof:
                prof.enable()
            await asyncio.gather(*(drive(e, per_task) for e in executors))
            if prof:
                prof.disable()
                prof.dump_stats(f"{profile}.{workload}")
            wall, use1 = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
            done = per_task * tasks
            user, system = use1.ru_utime - use0.ru_utime, use1.ru_stime - use0.ru_stime
            results.append({"workload": workload, "tasks": tasks, "calls": done, "calls_per_s": done / wall,
                            "cpu_us_per_call": (user + system) / done * 1e6,
                            "user_us_per_call": user / done * 1e6, "system_us_per_call": system / done * 1e6})
            for executor in executors:
                await executor.terminate()
        return results
    finally:
        await sandbox.aclose()


def run_inproc(workloads: list[str], calls: int, tasks: list[int], keys: int,
               profile: str | None = None) -> list[dict]:
    """Start a Redis, measure every workload at every task count, stop the Redis."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    with tempfile.TemporaryDirectory(prefix="hetu-inproc-") as workdir:
        redis = RedisProcess(Path(workdir))
        try:
            results = []
            for n in tasks:
                coro = _measure(redis.url, workloads, calls, n, keys, profile)
                results += uvloop.run(coro) if uvloop else asyncio.run(coro)
            return results
        finally:
            redis.stop()
