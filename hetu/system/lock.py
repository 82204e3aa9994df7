"""Call locks: a system called with ``uuid=`` runs at most once per uuid."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..common.permission import Permission
from ..data.component import BaseComponent, define_component, property_field

logger = logging.getLogger("HeTu.root")

LOCK_EXPIRE_SECONDS = 7 * 24 * 3600


@define_component(namespace="HeTu", volatile=True, permission=Permission.ADMIN, force=True)
class SystemLock(BaseComponent):
    """A call lock: the uuid a ``call_lock`` system already ran with, so a repeated call
    with that uuid does not run it again. Stored as HeTu stores it."""
    uuid: str = property_field("", unique=True, dtype="U32")
    name: str = property_field("", dtype="U32")
    caller: np.int64 = property_field(0)
    # `0`, not `0.0`: the schema JSON (and its hash) must be HeTu's
    called: np.float64 = property_field(0, index=True)


async def clean_expired_call_locks(tbl_mgr, batch: int = 1000) -> int:
    """Delete lock rows older than 7 days from every lock table of ``tbl_mgr``."""
    cutoff = time.time() - LOCK_EXPIRE_SECONDS
    total = 0
    for comp, table in tbl_mgr.tables.items():
        if comp is not SystemLock and comp.master_ is not SystemLock:
            continue
        removed = 0
        while True:
            async with table.session() as s:
                repo = s.using(comp)
                rows = await repo.range("called", 0, cutoff, limit=batch)
                for row in rows:
                    repo.delete(row.id)
            removed += len(rows)
            if len(rows) < batch:
                break
        if removed:
            logger.info("removed %d expired call locks from %s", removed, comp.name_)
        total += removed
    return total
