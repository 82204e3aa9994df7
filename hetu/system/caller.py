"""Running systems: one transaction per call, re-run from the top on conflicts."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from ..common.slowlog import SlowLog
from ..data.backend.errors import RaceCondition
from .definer import SystemClusters, SystemDefine
from .lock import SystemLock

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

SLOW_LOG = SlowLog()
RETRY_DELAY_MAX = 0.2


class SystemCaller:
    """Calls systems on behalf of one context (a connection, or a background task)."""

    def __init__(self, namespace: str, tbl_mgr, context) -> None:
        self.namespace = namespace
        self.tbl_mgr = tbl_mgr
        self.context = context

    @classmethod
    def call_check(cls, system: str) -> SystemDefine:
        sys_def = SystemClusters().get_system(system)
        if sys_def is None:
            raise ValueError(f"no system named {system!r} exists in the served namespace")
        return sys_def

    async def call(self, system: str, *args: Any, uuid: str = "") -> Any:
        """Run ``system`` in its own transaction; returns the body's return value."""
        return await self.call_(self.call_check(system), *args, uuid=uuid)

    def _tables(self, sys_def: SystemDefine) -> list:
        comps = sorted(sys_def.full_components, key=lambda c: c.name_)
        if not comps:
            raise AssertionError(f"System {sys_def.name} uses no component and cannot be called")
        tables = []
        for comp in comps:
            table = self.tbl_mgr.get_table(comp)
            if table is None:
                raise RuntimeError(f"System {sys_def.name}: component {comp.name_} has no table here")
            tables.append(table)
        return tables

    async def call_(self, sys_def: SystemDefine, *args: Any, uuid: str = "") -> Any:
        ctx = self.context
        ctx.race_count = 0
        ctx.repo = {}
        ctx.depend = {}
        ctx.timestamp = time.time()
        tables = self._tables(sys_def)
        lock = sys_def.lock_component
        if uuid and lock is None:
            raise ValueError(
                f"System {sys_def.name} was called with uuid= but was not defined with call_lock=True"
            )
        systems = SystemClusters().get_systems()
        depend = {dep: systems[dep.partition(":")[0]].func for dep in sys_def.full_depends}
        session = tables[0].session()
        started = time.perf_counter()
        try:
            while True:
                ctx.depend = dict(depend)
                try:
                    async with session:
                        ctx.repo = {(t.comp_cls.master_ or t.comp_cls): session.using(t.comp_cls) for t in tables}
                        if lock is not None:
                            ctx.repo[SystemLock] = session.using(lock)
                        lock_repo = ctx.repo.get(SystemLock)
                        if uuid and await lock_repo.get(uuid=uuid) is not None:
                            replay.info("[UUIDExist][%s] %s uuid=%s: already ran", sys_def.name, ctx, uuid)
                            return None
                        result = await sys_def.func(ctx, *args)
                        if uuid:
                            await self._write_lock(ctx, session, lock, lock_repo, sys_def.name, uuid)
                    return result
                except RaceCondition as race:
                    if session.active:
                        session.discard()
                    if ctx.race_count >= sys_def.max_retry:
                        raise RuntimeError(
                            f"System {sys_def.name} still conflicted after {sys_def.max_retry} "
                            f"retries: {race}"
                        ) from race
                    ctx.race_count += 1
                    session.only_master = True  # a lagging replica may have caused it
                    delay = random.random() * RETRY_DELAY_MAX
                    replay.info("[RaceCondition][%s] %s retry in %.3fs: %s", sys_def.name, ctx, delay, race)
                    await asyncio.sleep(delay)
        finally:
            if session.active:
                session.discard()
            ctx.repo = {}
            SLOW_LOG.record(sys_def.name, time.perf_counter() - started, ctx.race_count)

    @staticmethod
    async def _write_lock(ctx, session, lock, lock_repo, name: str, uuid: str) -> None:
        if not session.active:  # the body committed early: lock in a transaction of its own
            async with session:
                lock_repo = session.using(lock)
                await SystemCaller._upsert_lock(ctx, lock_repo, name, uuid)
            return
        await SystemCaller._upsert_lock(ctx, lock_repo, name, uuid)

    @staticmethod
    async def _upsert_lock(ctx, lock_repo, name: str, uuid: str) -> None:
        async with lock_repo.upsert(uuid=uuid) as row:
            row.name = name
            row.caller = ctx.caller
            row.called = time.time()

    async def remove_call_lock(self, system: str, uuid: str) -> None:
        """Forget that ``uuid`` ran, so a call with it runs again."""
        lock = self.call_check(system).lock_component
        if lock is None:
            return
        async with self.tbl_mgr.get_table(lock).session() as s:
            repo = s.using(lock)
            row = await repo.get(uuid=uuid)
            if row is not None:
                repo.delete(row.id)

