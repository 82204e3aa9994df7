"""Probing the read replicas of a backend in the background.

One :class:`ReplicaMonitor` per backend and worker process runs one task that, every
``replica_probe_interval`` seconds, asks the master for its replication offset and
every replica for its replication status (all replicas at once, one round trip each;
Redis: ``INFO``), and moves each replica's :class:`~.replica_health.ReplicaHealth`.
Reads never wait for it: :class:`~hetu.data.backend.Backend` rebuilds its list of
usable replicas when a state changes, so the read path costs nothing more.

A replica becomes usable only after it has caught up with the master: its offset
reached the master's offset of that moment, so a reader moving back to it from the
master sees nothing older than what it already showed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...common.tasks import cancel_and_wait
from .replica_health import ReplicaHealth, ReplicaState, ReplicationStatus

if TYPE_CHECKING:
    from .base import BackendClient

logger = logging.getLogger("HeTu.root")

DEFAULT_PROBE_INTERVAL = 0.5  # seconds between two probes of every replica
DEFAULT_MAX_LAG = 1.0  # seconds a usable replica may be behind the master
MIN_PROBE_TIMEOUT = 1.0  # seconds a probe may take before the replica counts as frozen
CATCH_UP_PAUSE = 0.01  # seconds between offset checks while a replica catches up

Listener = Callable[["BackendClient", ReplicaState], None]


def safe_name(client: BackendClient) -> str:
    """``host:port/db`` of a client, without credentials, for logs."""
    url = getattr(client, "url", None)
    if not url:
        return type(client).__name__
    parts = urlsplit(url)
    host = parts.hostname or parts.path
    return f"{host}:{parts.port}{parts.path}" if parts.port else str(host)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the probe timeout"
    return f"{type(exc).__name__}: {exc}"


class ReplicaMonitor:
    """Keeps the health of a backend's replicas current and tells listeners of changes.

    ``changed`` is called first on every state change (the backend rebuilds its read
    pools), then every listener with the replica's client and its new state.
    """

    def __init__(self, master: BackendClient, servants: list[BackendClient], changed: Callable[[], None],
                 interval: float = DEFAULT_PROBE_INTERVAL, max_lag: float = DEFAULT_MAX_LAG) -> None:
        if interval <= 0 or max_lag <= 0:
            raise ValueError("replica_probe_interval and replica_max_lag must be positive (seconds)")
        self.master = master
        self.interval = float(interval)
        self.max_lag = float(max_lag)
        self.timeout = max(MIN_PROBE_TIMEOUT, self.interval)
        self.health = {client: ReplicaHealth(safe_name(client)) for client in servants}
        self._changed = changed
        self._listeners: list[Listener] = []
        self._samples: collections.deque[tuple[float, str, int]] = collections.deque()
        self._task: asyncio.Task | None = None

    # -- listeners ------------------------------------------------------------------------

    def watch(self, listener: Listener) -> None:
        """Call ``listener(client, state)`` whenever a replica changes state."""
        self._listeners.append(listener)

    def unwatch(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Probe once (so a healthy replica serves from the start), then keep probing."""
        try:
            async with asyncio.timeout(self.timeout + self.max_lag + 1.0):
                await self.probe_round()
        except TimeoutError:
            logger.warning("the first probe of the read replicas did not finish; they serve once it does")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hetu-replica-monitor")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe_round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a defect: keep probing
                logger.exception("probing the read replicas failed")

    def suspect(self, client: BackendClient, reason: str) -> bool:
        """Stop reading from ``client`` at once (its connection broke, say) until a probe
        finds it usable again; False if it is not a monitored replica."""
        health = self.health.get(client)
        if health is None:
            return False
        if health.state is not ReplicaState.UNKNOWN:
            self._move(client, health, health.fault_state(), reason)
        return True

    # -- probing ----------------------------------------------------------------------------

    async def probe_round(self) -> None:
        """Probe the master, then every replica (concurrently), and move their states."""
        master = await self._probe_master()
        await asyncio.gather(*(self._check(client, health, master) for client, health in self.health.items()))

    async def _probe_master(self) -> ReplicationStatus | None:
        try:
            async with asyncio.timeout(self.timeout):
                status = await self.master.replication_status()
        except Exception:  # the master is down or frozen: judge replicas by their own view
            return None
        now = time.monotonic()
        self._samples.append((now, status.replid, status.offset))
        # keep the newest sample older than max_lag, and everything newer
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.max_lag:
            self._samples.popleft()
        return status

    def _lag_floor(self, master: ReplicationStatus) -> int | None:
        """The master's offset ``max_lag`` seconds ago (or earlier), if known."""
        oldest = self._samples[0] if self._samples else None
        if oldest is None or oldest[0] > time.monotonic() - self.max_lag or oldest[1] != master.replid:
            return None
        return oldest[2]

    async def _status(self, client: BackendClient) -> ReplicationStatus:
        async with asyncio.timeout(self.timeout):
            await client.open()  # a replica that was down when the server started
            return await client.replication_status()

    async def _check(self, client: BackendClient, health: ReplicaHealth,
                     master: ReplicationStatus | None) -> None:
        try:
            status = await self._status(client)
        except Exception as exc:
            self._move(client, health, health.fault_state(), f"it does not answer ({_describe(exc)})")
            return
        problem = health.problem(status, master, None if master is None else self._lag_floor(master))
        if problem is not None:
            self._move(client, health, health.fault_state(), problem)
            return
        if health.usable:
            broken = health.broke_continuity(status)
            if broken is None:
                health.confirm(status)
                return
            # changes may have been missed although it looks fine now: leave and come back
            self._move(client, health, ReplicaState.UNUSABLE, f"{broken} since the last probe")
        if master is not None:
            caught_up = await self._catch_up(client, master)
            if caught_up is None:
                self._move(client, health, health.fault_state(), "it is still catching up with the master")
                return
            status = caught_up
        health.confirm(status)
        self._move(client, health, ReplicaState.USABLE, f"in sync at offset {status.offset}")

    async def _catch_up(self, client: BackendClient, master: ReplicationStatus) -> ReplicationStatus | None:
        """Wait (up to ``max_lag``) until the replica has what the master had when probed."""
        deadline = time.monotonic() + self.max_lag
        while True:
            try:
                status = await self._status(client)
            except Exception:
                return None
            if status.unfollowing_reason() is not None:
                return None
            if status.replid == master.replid and status.offset >= master.offset:
                return status
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(CATCH_UP_PAUSE)

    def _move(self, client: BackendClient, health: ReplicaHealth, state: ReplicaState, reason: str) -> None:
        before = health.state
        if not health.move(state, reason):
            return
        if state is ReplicaState.USABLE and health.epoch == 1:
            logger.info("read replica %s is in sync (%s): reads go to it", health.name, reason)
        elif state is ReplicaState.USABLE:
            logger.warning("read replica %s is usable again (%s): reads return to it", health.name, reason)
        elif before is ReplicaState.USABLE:
            logger.warning("read replica %s is unusable: %s; reads fall back to the master", health.name, reason)
        else:
            logger.warning("read replica %s is not usable yet: %s; reads go to the master meanwhile",
                           health.name, reason)
        self._changed()
        for listener in list(self._listeners):
            try:
                listener(client, state)
            except Exception:
                logger.exception("a listener of read replica %s failed", health.name)
