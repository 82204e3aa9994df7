"""The backend interface: what the session layer needs from a storage engine.

A backend client reads rows, ranges over indexes, checks unique values, commits a
:class:`WriteSet` atomically (every read and written row's version and every new
unique value are checked inside the same atomic step), publishes one
:class:`ChangeEvent` per touched table on commit, and maintains table meta. Nothing
above this module knows which engine it runs on.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...common.tasks import cancel_and_wait
from .replica_health import ReplicationStatus
from .table import TableReference


@dataclass
class TableWrites:
    """Everything one transaction does to one table."""

    ref: TableReference
    inserts: list[np.record] = field(default_factory=list)
    # (row as read, row as it will be, names of the changed fields)
    updates: list[tuple[np.record, np.record, tuple[str, ...]]] = field(default_factory=list)
    deletes: list[np.record] = field(default_factory=list)  # rows as read
    # rows only read: (row id, version read); their version must still hold at commit
    reads: list[tuple[int, int]] = field(default_factory=list)

    def is_dirty(self) -> bool:
        return bool(self.inserts or self.updates or self.deletes)

    def touched_indexes(self) -> list[str]:
        """Indexes whose content changes with this write set (for change events)."""
        comp = self.ref.comp_cls
        if self.inserts or self.deletes:
            return sorted(comp.indexes_)
        changed = {f for _, _, fields in self.updates for f in fields}
        return sorted(f for f in comp.indexes_ if f in changed)

    def touched_rows(self) -> list[int]:
        ids = [int(r["id"]) for r in self.inserts]
        ids += [int(new["id"]) for _, new, _ in self.updates]
        ids += [int(r["id"]) for r in self.deletes]
        return ids


WriteSet = list[TableWrites]


@dataclass(frozen=True)
class ChangeEvent:
    """A committed change to one table: the rows written and the indexes touched.

    ``gap`` marks the other kind of event: the feed lost its connection and is back, so
    changes of the channel may have been missed meanwhile and anything may have changed
    (listeners re-read all they show).
    """

    channel: str
    row_ids: tuple[int, ...]
    indexes: tuple[str, ...]
    gap: bool = False

    @classmethod
    def missed(cls, channel: str) -> ChangeEvent:
        """The event that tells listeners of ``channel`` they may have missed changes."""
        return cls(channel, (), (), gap=True)

    def encode(self) -> bytes:
        rows = ",".join(map(str, self.row_ids))
        return f"{rows}|{','.join(self.indexes)}".encode()

    @classmethod
    def decode(cls, channel: str, payload: bytes | str) -> ChangeEvent:
        if isinstance(payload, bytes):
            payload = payload.decode()
        rows, _, indexes = payload.partition("|")
        return cls(
            channel,
            tuple(int(r) for r in rows.split(",") if r),
            tuple(i for i in indexes.split(",") if i),
        )


@dataclass(frozen=True)
class Bounds:
    """A normalised index range: typed low/high values with inclusiveness."""

    low: Any
    high: Any
    low_inclusive: bool
    high_inclusive: bool
    empty: bool = False


class BackendClient(abc.ABC):
    """One connection target (a master or a read replica) of a backend."""

    is_servant: bool = False

    @property
    def probes_replication(self) -> bool:
        """Whether :meth:`replication_status` tells if this read replica follows its
        master; such a replica serves reads only while its probes say so."""
        return False

    async def replication_status(self) -> ReplicationStatus:
        """Where this server stands in replication (one cheap round trip)."""
        raise NotImplementedError(f"{type(self).__name__} does not report its replication")

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and check the server (version, scripts); idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; idempotent."""

    @abc.abstractmethod
    async def get(self, ref: TableReference, row_id: int) -> np.record | None:
        """The row with this id, or None."""

    async def get_many(self, ref: TableReference, row_ids: list[int]) -> list[np.record | None]:
        """The rows with these ids (None where there is none), in the order asked.

        Backends override this with one round trip for the whole list."""
        return list(await asyncio.gather(*(self.get(ref, i) for i in row_ids)))

    def range_order_key(self, value: Any, row_id: int) -> tuple:
        """The key :meth:`range` orders rows by: the index value, then the row id as
        this backend breaks ties (numerically here; Redis overrides it)."""
        return (value, row_id)

    @abc.abstractmethod
    async def range(
        self, ref: TableReference, index: str, bounds: Bounds, limit: int, desc: bool
    ) -> np.recarray:
        """Rows whose ``index`` value is within ``bounds``, ordered by (value, id).

        ``limit < 0`` means unlimited. Always returns a recarray (maybe empty).
        """

    async def first(self, ref: TableReference, index: str, bounds: Bounds) -> np.record | None:
        """The first row of ``range(ref, index, bounds, 1, False)``, or None: what a
        ``get`` by an index reads. Backends override it to skip building a recarray."""
        # the class's range, not the instance's: metrics wrap each operation on the
        # instance, and this round trip is counted once, as ``first``
        rows = await type(self).range(self, ref, index, bounds, 1, False)
        return rows[0] if len(rows) else None

    @abc.abstractmethod
    async def range_ids(
        self, ref: TableReference, index: str, bounds: Bounds, limit: int, desc: bool
    ) -> list[int]:
        """Like :meth:`range` but only the row ids."""

    @abc.abstractmethod
    async def find_unique(
        self, ref: TableReference, values: list[tuple[str, Any]]
    ) -> list[int | None]:
        """For each ``(unique field, value)``: the id of the row holding it, or None.

        One round trip for the whole list.
        """

    @abc.abstractmethod
    async def commit(self, writes: WriteSet) -> None:
        """Apply ``writes`` atomically or raise :class:`RaceCondition`.

        Checks, in the same atomic step: every read, updated and deleted row still has
        the version read; inserted ids do not exist; every inserted or changed unique
        value is free (rows deleted by this commit free their values). Publishes one
        :class:`ChangeEvent` per dirty table after the writes.
        """

    @abc.abstractmethod
    def change_channel(self, ref: TableReference) -> str:
        """The channel change events of ``ref`` are published on."""

    @abc.abstractmethod
    def change_feed(self) -> ChangeFeed:
        """A new listener for change events (one per worker is enough)."""

    @abc.abstractmethod
    def maintenance(self) -> TableMaintenance:
        """Schema maintenance on this client (master only)."""


class ChangeFeed(abc.ABC):
    """Receives :class:`ChangeEvent` s for the channels it subscribed to.

    Implementations run one background task that puts events into ``self._queue``.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.reconnects = 0  # connections lost and opened again by the feed itself (metrics)

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving events of ``channel``; returns once they will be delivered."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    async def get(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event, or None after ``timeout`` seconds."""
        if self._task is not None and self._task.done() and self._queue.empty():
            self._task.result()  # surface the background task's failure
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _stop_task(self) -> None:
        await cancel_and_wait(self._task)

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        while True:
            event = await self.get()
            if event is not None:
                yield event


@dataclass(frozen=True)
class TableMeta:
    """What a backend stores about a table: schema version, cluster id and JSON."""

    version: str
    cluster_id: int
    json: str


class TableStatus:
    """What a check of a stored table against its definition found."""
    OK = "ok"
    NOT_EXISTS = "not_exists"
    SCHEMA_MISMATCH = "schema_mismatch"
    CLUSTER_MISMATCH = "cluster_mismatch"


class TableMaintenance(abc.ABC):
    """Creates tables, compares stored schemas with definitions, flushes tables."""

    @abc.abstractmethod
    async def read_meta(self, ref: TableReference) -> TableMeta | None: ...

    @abc.abstractmethod
    async def write_meta(self, ref: TableReference) -> None:
        """Store the meta of ``ref`` as it is defined now."""

    @abc.abstractmethod
    async def create_table(self, ref: TableReference) -> None:
        """Create storage and meta; :class:`RaceCondition` if the meta exists."""

    @abc.abstractmethod
    async def drop_table(self, ref: TableReference) -> int:
        """Delete every row and the meta of ``ref``; returns the number of rows."""

    async def check_table(self, ref: TableReference) -> tuple[str, TableMeta | None]:
        """Compare the stored meta with the definition: one of :class:`TableStatus`.

        The schema matches when the stored version hash is the definition's, or when
        the stored JSON means the same (:meth:`BaseComponent.same_schema`).
        """
        meta = await self.read_meta(ref)
        if meta is None:
            return TableStatus.NOT_EXISTS, None
        if meta.cluster_id != ref.cluster_id:
            return TableStatus.CLUSTER_MISMATCH, meta
        # the hash is HeTu's (md5 of the JSON text); equal meaning written otherwise
        # (`0` vs `0.0`, `U32` vs `<U32`) is no change
        if meta.version != ref.comp_cls.schema_version() and not ref.comp_cls.same_schema(meta.json):
            return TableStatus.SCHEMA_MISMATCH, meta
        return TableStatus.OK, meta

    async def flush(self, ref: TableReference, force: bool = False) -> None:
        """Wipe a volatile table (``force`` allows persistent ones)."""
        if not ref.comp_cls.volatile_ and not force:
            raise ValueError(
                f"{ref.comp_name} is persistent; flushing it would lose data "
                f"(pass force=True if that is really wanted)"
            )
        await self.drop_table(ref)
        await self.create_table(ref)
