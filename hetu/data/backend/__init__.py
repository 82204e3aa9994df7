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
    """A master client plus read replicas, with weighted transactional reads."""

    def __init__(
        self,
        master: BackendClient,
        servants: list[BackendClient] | None = None,
        master_weight: float = 1.0,
    ) -> None:
        self.master = master
        self.servants = list(servants or [])
        self.master_weight = float(master_weight)
        self._read_pool = self.servants + [master]
        self._read_weights = [1.0] * len(self.servants) + [self.master_weight]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Backend:
        return cls(create_client(backend_type_of_url(url), url, **options))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Backend:
        """From a ``BACKENDS`` entry: ``type``, ``master``, ``servants``, ``master_weight``."""
        config = dict(config)
        master_url = config.pop("master", None)
        if not master_url:
            raise ValueError("backend config needs a `master` URL")
        if isinstance(master_url, (list, tuple)):
            master_url = master_url[0]
        kind = config.pop("type", None) or backend_type_of_url(master_url)
        servants = config.pop("servants", None) or []
        weight = config.pop("master_weight", 1.0)
        master = create_client(kind, master_url, **config)
        replicas = [create_client(kind, u, is_servant=True, **config) for u in servants]
        return cls(master, replicas, weight)

    # -- clients ------------------------------------------------------------------

    @property
    def servant(self) -> BackendClient:
        """A random read replica (the master when there is none): subscription reads."""
        return random.choice(self.servants) if self.servants else self.master

    def master_or_servant(self) -> BackendClient:
        """A client for transactional reads, weighted by ``master_weight``."""
        if not self.servants:
            return self.master
        return random.choices(self._read_pool, weights=self._read_weights)[0]

    async def open(self) -> None:
        for client in self._read_pool:
            await client.open()

    async def close(self) -> None:
        for client in self._read_pool:
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
