"""Preparing tables before serving: create missing ones, refuse changed schemas.

``hetu start`` (and the test Sandbox) call :func:`prepare_tables`; a table whose stored
schema or cluster id differs from the code is never served: the operator runs
``hetu upgrade`` first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import Backend
from .base import TableStatus
from .errors import RaceCondition, SchemaMismatch
from .table import TableReference

logger = logging.getLogger("HeTu.root")


async def prepare_tables(backend: Backend, refs: Iterable[TableReference]) -> list[TableReference]:
    """Create the tables that do not exist; returns the created ones.

    Raises :class:`SchemaMismatch` naming every table whose stored schema hash or
    cluster id differs from its definition.
    """
    maint = backend.maintenance()
    created: list[TableReference] = []
    mismatched: list[str] = []
    for ref in refs:
        status, meta = await maint.check_table(ref)
        if status == TableStatus.NOT_EXISTS:
            try:
                await maint.create_table(ref)
                created.append(ref)
            except RaceCondition:
                status, meta = await maint.check_table(ref)  # another worker created it
        if status == TableStatus.SCHEMA_MISMATCH:
            mismatched.append(f"{ref.instance_name}:{ref.comp_name} (schema changed)")
        elif status == TableStatus.CLUSTER_MISMATCH:
            mismatched.append(
                f"{ref.instance_name}:{ref.comp_name} (cluster id {meta.cluster_id} -> {ref.cluster_id})"
            )
    if mismatched:
        raise SchemaMismatch(
            "the stored tables do not match the component definitions: "
            + ", ".join(mismatched)
            + "; run `hetu upgrade` to migrate them before serving"
        )
    return created


async def flush_volatile(backend: Backend, refs: Iterable[TableReference]) -> list[TableReference]:
    """Wipe every volatile table among ``refs`` (data and meta are recreated)."""
    maint = backend.maintenance()
    flushed = []
    for ref in refs:
        if ref.comp_cls.volatile_:
            await maint.flush(ref)
            flushed.append(ref)
            logger.info("flushed volatile table %s:%s", ref.instance_name, ref.comp_name)
    return flushed
