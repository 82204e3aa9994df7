"""Snowflake row ids: time-ordered, unique across every worker sharing a database.

Layout of the 64-bit id (sign bit always 0)::

    | 41 bits: ms since TW_EPOCH | 10 bits: worker id | 12 bits: sequence |

The worker id comes from a lease stored in the backend (see
:mod:`hetu.data.backend.worker_keeper`), so two live processes never share one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

logger = logging.getLogger("HeTu.root")

TW_EPOCH = 1766000000000  # 2025-12-17 19:33:20 UTC, the reference's epoch
WORKER_ID_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_ID_BITS) - 1
SEQUENCE_MASK = (1 << SEQUENCE_BITS) - 1
WORKER_SHIFT = SEQUENCE_BITS
TIMESTAMP_SHIFT = SEQUENCE_BITS + WORKER_ID_BITS


def now_ms() -> int:
    """The wall clock in whole milliseconds since the Unix epoch (the ids' timestamp unit)."""
    return time.time_ns() // 1_000_000


class SnowflakeID:
    """Process-wide id generator (one instance per process).

    ``SnowflakeID().init(worker_id, last_timestamp)`` must run before the first id.
    ``last_timestamp`` is the highest millisecond this worker id ever used (kept in the
    lease); ids never go back below it, even when the wall clock does (clock-rollback
    guard): while the clock is behind, ids continue from the last millisecond and, once
    its 4096 sequence numbers are used up, generation waits for the clock to catch up.

    >>> SnowflakeID().init(1, 0)
    >>> SnowflakeID().next_id() > 0
    True
    """

    _instance: SnowflakeID | None = None

    def __new__(cls) -> SnowflakeID:
        if cls._instance is None:
            inst = super().__new__(cls)
            inst._lock = threading.Lock()
            inst.worker_id = None
            inst.last_timestamp = -1
            inst.sequence = 0
            inst._warned_rollback = False
            cls._instance = inst
        return cls._instance

    def init(self, worker_id: int, last_timestamp: int = -1) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(
                f"worker id {worker_id} is out of range: it must be within 0..{MAX_WORKER_ID}"
            )
        with self._lock:
            self.worker_id = worker_id
            self.last_timestamp = max(int(last_timestamp), -1)
            self.sequence = 0

    @property
    def initialized(self) -> bool:
        return self.worker_id is not None

    def _try_next(self) -> int | None:
        if self.worker_id is None:
            raise RuntimeError(
                "SnowflakeID is not initialised: call SnowflakeID().init(worker_id) first "
                "(the server does this with its leased worker id)"
            )
        with self._lock:
            ts = now_ms()
            if ts < self.last_timestamp:
                if not self._warned_rollback:
                    logger.warning(
                        "clock moved back by %d ms; continuing ids from the last timestamp",
                        self.last_timestamp - ts,
                    )
                    self._warned_rollback = True
                ts = self.last_timestamp
            if ts == self.last_timestamp:
                if self.sequence == SEQUENCE_MASK:
                    return None  # this millisecond is used up
                self.sequence += 1
            else:
                self.sequence = 0
                self._warned_rollback = False
            self.last_timestamp = ts
            return (
                ((ts - TW_EPOCH) << TIMESTAMP_SHIFT)
                | (self.worker_id << WORKER_SHIFT)
                | self.sequence
            )

    def next_id(self) -> int:
        """Next id; blocks for a millisecond when this one is exhausted."""
        while (new_id := self._try_next()) is None:
            time.sleep(0.001)
        return new_id

    async def next_id_async(self) -> int:
        """Next id; yields to the event loop while waiting for the next millisecond."""
        while (new_id := self._try_next()) is None:
            await asyncio.sleep(0.001)
        return new_id


def id_timestamp_ms(row_id: int) -> int:
    """The wall-clock millisecond at which ``row_id`` was generated."""
    return (row_id >> TIMESTAMP_SHIFT) + TW_EPOCH


def id_worker(row_id: int) -> int:
    """The worker id encoded in ``row_id``."""
    return (row_id >> WORKER_SHIFT) & MAX_WORKER_ID
