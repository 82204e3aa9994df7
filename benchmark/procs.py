"""Client processes: each connects, reports ready, waits for the common start, works, and
sends back its results.

Spreading connections over processes keeps the Python client from being what is
measured. Timestamps are ``time.monotonic()``, which on Linux is one clock for every
process, so times taken in different processes compare.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any


def split(total: int, parts: int) -> list[int]:
    """``total`` connections over ``parts`` processes, as evenly as possible (no empty part)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Gate:
    """The child's side of the start signal."""

    def __init__(self, events, go, start_at, stop_at) -> None:
        self._events, self._go, self._start_at, self._stop_at = events, go, start_at, stop_at

    async def ready(self) -> float:
        """Tell the parent this process is connected; wait for the start; return its time."""
        self._events.put(("ready", os.getpid(), None))
        await asyncio.to_thread(self._go.wait)
        start = self._start_at.value
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        return start

    def finished(self) -> None:
        """Tell the parent the measured work is over (before this process cleans up)."""
        self._events.put(("finished", os.getpid(), None))

    def stopped(self) -> bool:
        """True once the parent's stop time (see :meth:`ClientProcesses.stop_at`) has passed."""
        stop = self._stop_at.value
        return bool(stop) and time.monotonic() >= stop


def _child(target: Callable[[Any, Gate], Awaitable[Any]], spec: Any, events, go, start_at, stop_at) -> None:
    try:
        result = asyncio.run(target(spec, Gate(events, go, start_at, stop_at)))
    except BaseException:
        events.put(("error", os.getpid(), traceback.format_exc()))
    else:
        events.put(("result", os.getpid(), result))


class ClientProcesses:
    """``with ClientProcesses(target, specs) as group: group.wait_ready(); group.go(); group.results()``

    ``target(spec, gate)`` is an async function run in a fresh process per spec; it calls
    ``await gate.ready()`` once connected and returns a picklable result.
    """

    def __init__(self, target: Callable, specs: list) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._events = ctx.Queue()
        self._go = ctx.Event()
        self._start_at = ctx.Value("d", 0.0)
        self._stop_at = ctx.Value("d", 0.0)
        self.processes = [
            ctx.Process(target=_child, args=(target, spec, self._events, self._go, self._start_at, self._stop_at),
                        daemon=True)
            for spec in specs
        ]

    def __enter__(self) -> ClientProcesses:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()

    def _wait_for(self, kind: str, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        payloads = []
        while len(payloads) < len(self.processes):
            try:
                got, pid, payload = self._events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"client processes: {len(payloads)} of {len(self.processes)} "
                                   f"reported {kind} within {timeout:.0f}s") from None
            if got == "error":
                raise RuntimeError(f"client process {pid} failed:\n{payload}")
            if got != kind:
                raise RuntimeError(f"client process {pid} sent {got!r} while waiting for {kind!r}")
            payloads.append(payload)
        return payloads

    def wait_ready(self, timeout: float = 120) -> None:
        self._wait_for("ready", timeout)

    def go(self, delay: float = 0.05) -> float:
        """Release every process; they start at the returned monotonic time."""
        self._start_at.value = start = time.monotonic() + delay
        self._go.set()
        return start

    def stop_at(self, when: float) -> None:
        """Tell processes that watch ``gate.stopped()`` to finish at monotonic time ``when``."""
        self._stop_at.value = when

    def wait_finished(self, timeout: float) -> None:
        """Wait until every process called ``gate.finished()``."""
        self._wait_for("finished", timeout)

    def results(self, timeout: float) -> list:
        return self._wait_for("result", timeout)
