"""Storage backends: Redis (production), PostgreSQL, and SQLite (the embedded default).

``Backend`` groups one master client (all writes) with optional read replicas
(``servants``)::

    # or "postgresql://user:password@host:5432/dbname", or "sqlite:///./game.db"
    backend = Backend.from_url("redis://127.0.0.1:6379/0")
    await backend.open()
    async with backend.session("dev", 0) as session:
        ...
    await backend.close()
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlparse

from .base import (
    BackendClient,
    Bounds,
    ChangeEvent,
    ChangeFeed,
    TableMaintenance,
    TableMeta,
    TableStatus,
    TableWrites,
    WriteSet,
)
from .errors import RaceCondition, SchemaMismatch, UniqueViolation
from .replica_monitor import DEFAULT_MAX_LAG, DEFAULT_PROBE_INTERVAL, Listener, ReplicaMonitor
from .repo import SessionRepository, UpsertContext
from .session import Session
from .table import TableReference

REDIS_SCHEMES = ("redis", "rediss", "valkey", "valkeys", "unix",
                 "redis+cluster", "rediss+cluster", "valkey+cluster", "valkeys+cluster")
SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgresql", "postgres")


def backend_type_of_url(url: str) -> str:
    """``"redis"``, ``"postgres"`` or ``"sqlite"`` from a database URL (``ValueError`` otherwise)."""
    scheme = urlparse(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    if scheme in SQLITE_SCHEMES:
        return "sqlite"
    raise ValueError(
        f"unsupported database URL {url!r}: use redis://host:port/db, "
        f"postgresql://user:password@host:port/dbname or sqlite:///path/to/file.db"
    )


def create_client(kind: str, url: str, is_servant: bool = False, **options: Any) -> BackendClient:
    """A backend client of ``kind``: ``redis``, ``postgres`` or ``sqlite``.

    ``sql`` (HeTu's name for its SQL backends) picks PostgreSQL or SQLite by the URL.
    """
    kind = kind.lower()
    if kind == "sql":
        kind = backend_type_of_url(url)
        if kind == "redis":
            raise ValueError(f"backend type 'sql' needs a postgresql:// or sqlite:/// URL, got {url!r}")
    if kind == "redis":
        from .redis import RedisBackendClient

        return RedisBackendClient(url, is_servant=is_servant, **options)
    if kind in ("postgres", "postgresql"):
        if backend_type_of_url(url) != "postgres":
            raise ValueError(f"backend type {kind!r} supports postgresql:// URLs only, got {url!r}")
        from .postgres import PostgresBackendClient

        return PostgresBackendClient(url, is_servant=is_servant, **options)
    if kind == "sqlite":
        if backend_type_of_url(url) != "sqlite":
            raise ValueError(f"backend type {kind!r} supports sqlite:/// URLs only, got {url!r}")
        from .sqlite import SQLiteBackendClient

        return SQLiteBackendClient(url, is_servant=is_servant, **options)
    raise ValueError(f"unknown backend type {kind!r}: use Redis, PostgreSQL or SQLite")


class Backend:
    """A master client plus read replicas, with weighted transactional reads.

    Replicas that can report their replication (Redis) are probed in the background
    (:mod:`.replica_monitor`) and serve reads only while they follow the master; the
    others (PostgreSQL hot standbys), and all of them with ``replica_probe_interval=0``,
    always count as usable.
    """

    def __init__(
        self,
        master: BackendClient,
        servants: list[BackendClient] | None = None,
        master_weight: float = 1.0,
        replica_probe_interval: float = DEFAULT_PROBE_INTERVAL,
        replica_max_lag: float = DEFAULT_MAX_LAG,
    ) -> None:
        self.master = master
        self.servants = list(servants or [])
        self.master_weight = float(master_weight)
        # an interval of 0 turns probing off: every replica counts as usable, always
        probed = [s for s in self.servants if s.probes_replication] if replica_probe_interval else []
        self._probing = bool(replica_probe_interval)
        self.monitor: ReplicaMonitor | None = None
        if probed:
            self.monitor = ReplicaMonitor(master, probed, self._replicas_changed,
                                          replica_probe_interval, replica_max_lag)
        self._replicas_changed()

    def _replicas_changed(self) -> None:
        """Rebuild the read pools from the replicas usable now (the read path then
        picks without looking at health at all)."""
        self.usable_servants = [s for s in self.servants if self.is_usable(s)]
        self._read_pool = self.usable_servants + [self.master]
        self._read_weights = [1.0] * len(self.usable_servants) + [self.master_weight]
        # subscriptions read only from replicas whose health is probed: one that fell
        # behind unseen would leave subscribers stale. Unprobed ones (a Redis Cluster's
        # replicas, PostgreSQL standbys) serve transactional reads only, where a stale
        # read fails its commit's version check. With probing off, every one serves.
        self._subscription_pool = [s for s in self.usable_servants if not self._probing
                                   or (self.monitor is not None and s in self.monitor.health)]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Backend:
        return cls(create_client(backend_type_of_url(url), url, **options))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Backend:
        """From a ``BACKENDS`` entry: ``type``, ``master``, ``servants``, ``master_weight``,
        ``replica_probe_interval``, ``replica_max_lag``."""
        config = dict(config)
        master_url = config.pop("master", None)
        if not master_url:
            raise ValueError("backend config needs a `master` URL")
        if isinstance(master_url, (list, tuple)):
            master_url = master_url[0]
        kind = config.pop("type", None) or backend_type_of_url(master_url)
        servants = config.pop("servants", None) or []
        weight = config.pop("master_weight", 1.0)
        interval = float(config.pop("replica_probe_interval", DEFAULT_PROBE_INTERVAL))
        max_lag = float(config.pop("replica_max_lag", DEFAULT_MAX_LAG))
        master = create_client(kind, master_url, **config)
        replicas = [create_client(kind, u, is_servant=True, **config) for u in servants]
        return cls(master, replicas, weight, interval, max_lag)

    # -- clients ------------------------------------------------------------------

    def is_usable(self, client: BackendClient) -> bool:
        """Whether ``client`` may serve reads now (the master always may)."""
        if self.monitor is None or client not in self.monitor.health:
            return True
        return self.monitor.health[client].usable

    def replica_epoch(self, client: BackendClient) -> int:
        """Grows each time ``client`` becomes usable: a reader that began on an older
        epoch may have missed changes."""
        if self.monitor is None or client not in self.monitor.health:
            return 0
        return self.monitor.health[client].epoch

    def suspect_replica(self, client: BackendClient, reason: str) -> bool:
        """Stop reading from replica ``client`` until its next probe finds it usable (its
        listeners hear of it); False if ``client`` is not a probed replica."""
        return self.monitor is not None and self.monitor.suspect(client, reason)

    def watch_replicas(self, listener: Listener) -> None:
        """Call ``listener(client, state)`` when a replica changes state."""
        if self.monitor is not None:
            self.monitor.watch(listener)

    def unwatch_replicas(self, listener: Listener) -> None:
        if self.monitor is not None:
            self.monitor.unwatch(listener)

    @property
    def servant(self) -> BackendClient:
        """A random usable, health-probed read replica (the master when there is none):
        the change feed and subscription reads."""
        pool = self._subscription_pool
        return random.choice(pool) if pool else self.master

    def master_or_servant(self) -> BackendClient:
        """A client for transactional reads, weighted by ``master_weight``."""
        if not self.usable_servants:
            return self.master
        return random.choices(self._read_pool, weights=self._read_weights)[0]

    async def open(self) -> None:
        await self.master.open()
        for client in self.servants:
            if self.monitor is not None and client in self.monitor.health:
                continue  # the monitor opens it, and retries while it is down
            await client.open()
        if self.monitor is not None:
            await self.monitor.start()

    async def close(self) -> None:
        if self.monitor is not None:
            await self.monitor.close()
        for client in self.servants + [self.master]:
            await client.close()

    # -- use --------------------------------------------------------------------

    def session(self, instance: str, cluster_id: int, only_master: bool = False) -> Session:
        return Session(self, instance, cluster_id, only_master)

    def maintenance(self) -> TableMaintenance:
        return self.master.maintenance()

    def change_feed(self) -> ChangeFeed:
        return self.servant.change_feed()

    def change_channel(self, ref: TableReference) -> str:
        return self.master.change_channel(ref)


__all__ = [
    "Backend",
    "BackendClient",
    "Bounds",
    "ChangeEvent",
    "ChangeFeed",
    "RaceCondition",
    "SchemaMismatch",
    "Session",
    "SessionRepository",
    "TableMaintenance",
    "TableMeta",
    "TableReference",
    "TableStatus",
    "TableWrites",
    "UniqueViolation",
    "UpsertContext",
    "WriteSet",
    "backend_type_of_url",
    "create_client",
]
