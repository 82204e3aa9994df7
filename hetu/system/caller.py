"""Running systems: one transaction per call, re-run from the top on conflicts."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from ..common.slowlog import SlowLog
from ..data.backend.errors import RaceCondition
from ..data.backend.repo import SessionRepository
from .definer import SystemClusters, SystemDefine
from .lock import SystemLock

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

SLOW_LOG = SlowLog()
RETRY_DELAY_MAX = 0.2
_clusters = SystemClusters()  # the process-wide registry (clear() keeps the instance)


class _CallPlan:
    """What every call of one system on one table manager needs, worked out on its first
    call: the tables (sorted by component name, as before), the ``ctx.repo`` key and
    table of each, the call-lock component and the ``ctx.depend`` functions."""

    __slots__ = ("first", "repos", "lock", "depend")

    def __init__(self, sys_def: SystemDefine, tbl_mgr) -> None:
        comps = sorted(sys_def.full_components, key=lambda c: c.name_)
        if not comps:
            raise AssertionError(f"System {sys_def.name} uses no component and cannot be called")
        tables = []
        for comp in comps:
            table = tbl_mgr.get_table(comp)
            if table is None:
                raise RuntimeError(f"System {sys_def.name}: component {comp.name_} has no table here")
            tables.append(table)
        self.first = tables[0]
        self.lock = sys_def.lock_component
        repos = {(t.comp_cls.master_ or t.comp_cls): t.ref for t in tables}
        if self.lock is not None:
            repos[SystemLock] = tbl_mgr.get_table(self.lock).ref
        self.repos = tuple(repos.items())
        systems = _clusters.get_systems()
        self.depend = {dep: systems[dep.partition(":")[0]].func for dep in sys_def.full_depends}


class SystemCaller:
    """Calls systems on behalf of one context (a connection, or a background task)."""

    def __init__(self, namespace: str, tbl_mgr, context) -> None:
        self.namespace = namespace
        self.tbl_mgr = tbl_mgr
        self.context = context

    @classmethod
    def call_check(cls, system: str) -> SystemDefine:
        sys_def = _clusters.get_system(system)
        if sys_def is None:
            raise ValueError(f"no system named {system!r} exists in the served namespace")
        return sys_def

    async def call(self, system: str, *args: Any, uuid: str = "") -> Any:
        """Run ``system`` in its own transaction; returns the body's return value."""
        return await self.call_(self.call_check(system), *args, uuid=uuid)

    def _plan(self, sys_def: SystemDefine) -> _CallPlan:
        # by id (a SystemDefine is not hashable); the entry keeps its definition alive
        entry = self.tbl_mgr.call_plans.get(id(sys_def))
        if entry is None or entry[0] is not sys_def:
            entry = self.tbl_mgr.call_plans[id(sys_def)] = (sys_def, _CallPlan(sys_def, self.tbl_mgr))
        return entry[1]

    async def call_(self, sys_def: SystemDefine, *args: Any, uuid: str = "") -> Any:
        ctx = self.context
        ctx.race_count = 0
        ctx.repo = {}
        ctx.depend = {}
        ctx.timestamp = time.time()
        plan = self._plan(sys_def)
        lock = plan.lock
        if uuid and lock is None:
            raise ValueError(
                f"System {sys_def.name} was called with uuid= but was not defined with call_lock=True"
            )
        session = plan.first.session()
        started = time.perf_counter()
        try:
            while True:
                ctx.depend = dict(plan.depend)
                try:
                    async with session:
                        ctx.repo = {key: SessionRepository(session, ref) for key, ref in plan.repos}
                        lock_repo = ctx.repo[SystemLock] if uuid else None
                        if lock_repo is not None and await lock_repo.get(uuid=uuid) is not None:
                            replay.info("[UUIDExist][%s] %s uuid=%s: already ran", sys_def.name, ctx, uuid)
                            return None
                        result = await sys_def.func(ctx, *args)
                        if lock_repo is not None:
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

