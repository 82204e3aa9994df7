"""Worker-id leases: every process generating snowflake ids holds a distinct id.

Leases are rows of the core component ``WorkerLease`` (row id = worker id). A lease
expires ``LEASE_SECONDS`` after its last renewal, so the id of a killed process is
taken over by a new one after that. The lease also stores the last millisecond used,
so a process starting on a machine whose clock went back continues from there
(clock-rollback guard).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

import numpy as np

from ...common.permission import Permission
from ...common.snowflake_id import MAX_WORKER_ID, SnowflakeID, now_ms
from ...common.tasks import cancel_and_wait, cancel_requested
from ..component import BaseComponent, define_component, property_field
from . import Backend
from .errors import RaceCondition
from .table import TableReference

logger = logging.getLogger("HeTu.root")

LEASE_SECONDS = 60
RENEW_SECONDS = 5


@define_component(namespace="core", volatile=True, permission=Permission.ADMIN, force=True)
class WorkerLease(BaseComponent):
    """The lease of one snowflake worker id: who holds it and until when, and the last
    timestamp an id was made with."""
    node_id: str = property_field("", dtype="U96")
    expires_at: np.int64 = property_field(0)
    last_timestamp: np.int64 = property_field(0)


class LeaseLost(RuntimeError):
    """Another process took this worker id (the lease was not renewed in time)."""


def make_node_id() -> str:
    """``host:pid:token`` - unique per process, even when pids repeat."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


class WorkerKeeper:
    """Acquires, renews and releases this process's worker-id lease."""

    def __init__(self, backend: Backend, instance: str, cluster_id: int, node_id: str | None = None,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"the worker id lease must last more than 0 seconds, not {lease_seconds}")
        self.backend = backend
        self.lease_ms = int(lease_seconds * 1000)
        self.ref = TableReference(WorkerLease, instance, cluster_id)
        self.node_id = node_id or make_node_id()
        self.worker_id: int | None = None
        self.last_timestamp = 0
        self._task: asyncio.Task | None = None

    def _session(self):
        return self.backend.session(self.ref.instance_name, self.ref.cluster_id, only_master=True)

    async def _candidates(self) -> list[int]:
        now = now_ms()
        async with self._session() as s:
            leases = await s.using(WorkerLease).range("id", 0, MAX_WORKER_ID, limit=-1)
        taken = {int(r.id) for r in leases if r.expires_at > now}
        return [i for i in range(MAX_WORKER_ID + 1) if i not in taken]  # free or expired

    async def _claim(self, worker_id: int) -> int | None:
        """Take ``worker_id`` if free or expired; returns the last timestamp it used."""
        now = now_ms()
        async with self._session() as s:
            repo = s.using(WorkerLease)
            lease = await repo.get(id=worker_id)
            if lease is None:
                lease = WorkerLease.new_row(id_=worker_id)
                lease.node_id, lease.expires_at, lease.last_timestamp = self.node_id, now + self.lease_ms, now
                await repo.insert(lease)
                return now
            if lease.node_id != self.node_id and lease.expires_at > now:
                return None
            last = max(int(lease.last_timestamp), now)
            lease.node_id, lease.expires_at, lease.last_timestamp = self.node_id, now + self.lease_ms, last
            await repo.update(lease)
            return last

    async def acquire(self) -> int:
        """Lease a worker id and initialise :class:`SnowflakeID` with it."""
        if self.worker_id is not None:
            return self.worker_id
        for worker_id in await self._candidates():
            try:
                last = await self._claim(worker_id)
            except RaceCondition:
                continue  # another process claimed it at the same moment
            if last is not None:
                self.worker_id, self.last_timestamp = worker_id, last
                SnowflakeID().init(worker_id, last)
                logger.info("worker id %d leased by %s", worker_id, self.node_id)
                return worker_id
        raise RuntimeError(f"all {MAX_WORKER_ID + 1} worker ids are leased; no id for {self.node_id}")

    async def renew(self) -> None:
        """Extend the lease and store the last millisecond used for ids."""
        if self.worker_id is None:
            raise RuntimeError("no worker id leased")
        now = now_ms()
        async with self._session() as s:
            repo = s.using(WorkerLease)
            lease = await repo.get(id=self.worker_id)
            if lease is None or lease.node_id != self.node_id:
                raise LeaseLost(f"worker id {self.worker_id} is no longer leased by {self.node_id}")
            lease.expires_at = now + self.lease_ms
            lease.last_timestamp = max(int(lease.last_timestamp), SnowflakeID().last_timestamp, now)
            await repo.update(lease)

    async def release(self) -> None:
        """Give the id back (shutdown); the stored last timestamp is kept."""
        await self.stop()
        if self.worker_id is None:
            return
        # a renewal cancelled by stop() may still be finishing its commit (SQLite runs it
        # in a thread), so a conflict here is expected now and then: retry
        async for attempt in self._session().retry(5):
            async with attempt as s:
                repo = s.using(WorkerLease)
                lease = await repo.get(id=self.worker_id)
                if lease is not None and lease.node_id == self.node_id:
                    lease.expires_at = 0
                    lease.last_timestamp = max(int(lease.last_timestamp), SnowflakeID().last_timestamp)
                    await repo.update(lease)
        logger.info("released worker id %d (%s)", self.worker_id, self.node_id)
        self.worker_id = None

    def start(self, interval: float | None = None) -> None:
        """Renew the lease every ``interval`` seconds in the background (default:
        ``RENEW_SECONDS``, or a third of a shorter lease)."""
        if interval is None:
            interval = min(RENEW_SECONDS, self.lease_ms / 3000)
        if self._task is None:
            self._task = asyncio.create_task(self._keep_alive(interval), name="hetu-worker-lease")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

    async def _reacquire(self, interval: float) -> None:
        while True:
            try:
                await self.acquire()
                return
            except Exception as exc:  # unreachable, or every id leased: keep trying
                if cancel_requested():
                    raise asyncio.CancelledError from None
                logger.error("leasing a new worker id failed (%s); retrying", exc)
                await asyncio.sleep(interval)

    async def _keep_alive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except LeaseLost:
                # another process holds the id now (this one could not renew it in time):
                # using it further could repeat ids, so take a new one
                logger.critical("worker id %s lease lost by %s; leasing a new id", self.worker_id, self.node_id)
                self.worker_id = None
                await self._reacquire(interval)
            except Exception:  # the database is unreachable: keep trying
                if cancel_requested():  # the client library swallowed our stop()
                    raise asyncio.CancelledError from None
                logger.exception("renewing the worker id lease failed; retrying")
