"""Replace worker processes that die.

Sanic's manager notices a worker process that died (killed, out of memory, a crash in
native code) but does not start a new one, so a server of N workers silently keeps
serving with fewer. :func:`watch_workers` runs in the main process and asks the manager
to restart every server worker that failed after startup. The new worker leases a new
worker id (the dead one's lease expires after ``WORKER_LEASE_SECONDS``) and accepts
connections on the same socket; clients of the dead worker reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sanic.worker.process import ProcessState

from .metrics.settings import metrics_settings

logger = logging.getLogger("HeTu.root")

POLL_SECONDS = 0.5
# a worker that dies again soon after its restart waits longer each time (a crash loop
# must not keep the machine busy), up to this many seconds
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0  # alive this long after a restart: the backoff starts over


class WorkerWatchdog:
    """Restarts the server workers that failed, with a growing pause for one that keeps
    dying; :func:`watch_workers` runs it in a thread of the main process."""

    def __init__(self, manager, on_death: Callable[[int], None] | None = None) -> None:
        self.manager = manager
        self.on_death = on_death  # called with the pid of each worker found dead (metrics)
        self.stopping = threading.Event()
        self._backoff: dict[str, float] = {}
        self._restarted_at: dict[str, float] = {}
        self._pending: dict[str, float] = {}  # name -> when to restart it

    def failed_servers(self) -> list:
        return [p for p in self.manager.transient_processes
                if p.state == ProcessState.FAILED and not p.is_alive()]

    def check(self, now: float) -> None:
        if getattr(self.manager, "_shutting_down", False):
            return
        for process in self.failed_servers():
            name = process.name
            if name in self._pending:
                continue
            delay = 0.0
            if now - self._restarted_at.get(name, -STABLE_SECONDS) < STABLE_SECONDS:
                delay = min(max(self._backoff.get(name, 0.5) * 2, 1.0), MAX_BACKOFF_SECONDS)
            self._backoff[name] = delay
            self._pending[name] = now + delay
            exit_code = process.exitcode
            if self.on_death is not None:
                self.on_death(process.pid)
            logger.error("worker process %s (pid %s) died (exit code %s); restarting it%s", name,
                         process.pid, exit_code, f" in {delay:.0f} s" if delay else "")
        for name, when in list(self._pending.items()):
            if now >= when:
                del self._pending[name]
                self._restarted_at[name] = now
                # the manager's own message: handled by its monitor loop, in its thread
                self.manager.monitor_publisher.send(f"{name}:")

    def run(self) -> None:
        while not self.stopping.wait(POLL_SECONDS):
            try:
                self.check(time.monotonic())
            except Exception:
                logger.exception("the worker watchdog failed")


def watch_workers(app) -> None:
    """``main_process_ready`` listener: start the watchdog thread (multi-worker servers)."""
    try:
        manager = app.manager
    except Exception:  # single process: nothing to watch
        return
    on_death = None
    if metrics_settings(app.ctx.hetu.config) is not None:
        from .metrics.export import worker_died as on_death
    watchdog = WorkerWatchdog(manager, on_death)
    app.ctx.hetu_watchdog = watchdog
    threading.Thread(target=watchdog.run, name="hetu-worker-watchdog", daemon=True).start()


def stop_watching(app) -> None:
    """``main_process_stop`` listener."""
    watchdog = getattr(app.ctx, "hetu_watchdog", None)
    if watchdog is not None:
        watchdog.stopping.set()
