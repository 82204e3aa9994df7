"""Future calls: run a system later (once, or every ``timeout`` seconds).

Systems schedule calls through the built-in global systems, usually via a copy so the
scheduler table does not merge every user into one cluster::

    @hetu.define_system(namespace="Game", components=(Egg,), depends=("create_future_call:eggs",))
    async def plant(ctx, egg_id: int):
        await ctx.depend["create_future_call:eggs"](ctx, -30, "hatch", egg_id, timeout=10)

The target system needs ``call_lock=True``: a call runs with ``uuid=<row id>``, so a
call retried after a crash commits at most once. Each worker runs one scheduler task
that pops due rows about once a second.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import logging
import random
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..common.permission import Permission
from ..common.tasks import cancel_requested
from ..data.backend.errors import RaceCondition
from ..data.component import BaseComponent, define_component, property_field
from .caller import SystemCaller
from .context import SystemContext
from .definer import SystemClusters, define_system
from .lock import SystemLock, clean_expired_call_locks

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

ARGS_MAX_LEN = 1024
MIN_TIMEOUT = 5


@define_component(namespace="HeTu", permission=Permission.ADMIN, force=True)
class FutureCalls(BaseComponent):
    """A scheduled system call (``create_future_call``): which system, its arguments, when,
    whether it recurs. Stored as HeTu stores it."""
    owner: np.int64 = property_field(0, index=True)
    system: str = property_field("", dtype="U32")
    args: str = property_field("", dtype="U1024")
    recurring: bool = property_field(False)
    # float defaults written `0` (not `0.0`) as HeTu does, so the stored schema hash is HeTu's
    created: np.float64 = property_field(0)
    last_run: np.float64 = property_field(0)
    scheduled: np.float64 = property_field(0, index=True)
    timeout: np.int32 = property_field(60)


def _key_to_id(key: str) -> int:
    """A deterministic negative row id for ``key`` (snowflake ids are positive)."""
    h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
    return -(h >> 1) - 1


def _build_future_row(
    ctx, at: float, system: str, args: tuple, *, timeout: int = 60, recurring: bool = False, id_: int | None = None
) -> np.record:
    if timeout != 0:
        timeout = max(int(timeout), MIN_TIMEOUT)
    now = time.time()
    if at <= 0:
        at = now + abs(at)
    text = repr(tuple(args))
    if len(text) > ARGS_MAX_LEN:
        raise ValueError(f"future call arguments are too long: repr() is {len(text)} > {ARGS_MAX_LEN} characters")
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise AssertionError(
            f"future call arguments {text} cannot be restored by ast.literal_eval; "
            f"pass plain values (numbers, strings, tuples, lists, dicts)"
        ) from None
    if parsed != tuple(args):
        raise AssertionError(f"future call arguments {text} lose information when restored")
    if recurring and timeout == 0:
        raise AssertionError("a recurring future call needs a timeout (its period), not 0")
    target = SystemClusters().get_system(system)
    if target is None:
        raise RuntimeError(f"future call target {system!r} is not a system of the served namespace")
    if target.lock_component is None:
        raise RuntimeError(f"future call target {system!r} must be defined with call_lock=True")
    if target.permission not in (None, Permission.ADMIN):
        warnings.warn(
            f"future call target {system!r} has permission {target.permission!r}; future calls "
            f"run with no user (caller 0), so pass user ids in the arguments",
            stacklevel=3,
        )
    row = FutureCalls.new_row(id_=id_)
    row.owner = ctx.caller or -1
    row.system = system
    row.args = text
    row.recurring = recurring
    row.created = now
    row.last_run = 0
    row.scheduled = at
    row.timeout = timeout
    return row


@define_system(namespace="global", components=(FutureCalls,), force=True)
async def create_future_call(ctx, at: float, system: str, *args, timeout: int = 60, recurring: bool = False):
    """Schedule ``system(*args)`` at POSIX time ``at`` (or ``-at`` seconds from now if
    ``at <= 0``); returns the call's id. ``timeout``: re-run if not done after that many
    seconds (0 = at most once); ``recurring``: run every ``timeout`` seconds."""
    row = _build_future_row(ctx, at, system, args, timeout=timeout, recurring=recurring)
    await ctx.repo[FutureCalls].insert(row)
    return int(row.id)


@define_system(namespace="global", components=(FutureCalls,), force=True)
async def ensure_future_call(
    ctx, key: str, at: float, system: str, *args, timeout: int = 60, recurring: bool = False
):
    """Like ``create_future_call`` but at most one call per ``key``: an existing one is
    kept unchanged. Returns the call's id."""
    row_id = _key_to_id(key)
    if await ctx.repo[FutureCalls].get(id=row_id) is None:
        row = _build_future_row(ctx, at, system, args, timeout=timeout, recurring=recurring, id_=row_id)
        await ctx.repo[FutureCalls].insert(row)
    return row_id


@define_system(namespace="global", components=(FutureCalls,), force=True)
async def cancel_future_call(ctx, key: str):
    """Cancel the call made with ``ensure_future_call(key, ...)``; True if there was one."""
    row_id = _key_to_id(key)
    if await ctx.repo[FutureCalls].get(id=row_id) is None:
        return False
    ctx.repo[FutureCalls].delete(row_id)
    return True


# -- execution ----------------------------------------------------------------------------


def future_tables(tbl_mgr) -> list:
    """The ``FutureCalls`` table and the tables of its copies served by ``tbl_mgr``."""
    return [
        table
        for comp, table in tbl_mgr.tables.items()
        if comp is FutureCalls or comp.master_ is FutureCalls
    ]


async def next_due(table) -> float | None:
    """When the next call of ``table`` within the coming second is due, or None."""
    async with table.session() as s:
        rows = await s.using(table.comp_cls).range("scheduled", 0, time.time() + 1, limit=1)
    return float(rows[0].scheduled) if len(rows) else None


async def pop_upcoming_call(table) -> np.record | None:
    """Take the next due call: at-most-once calls are deleted, others leased for
    ``timeout`` seconds (re-run if they do not finish)."""
    comp = table.comp_cls
    try:
        async for attempt in table.session().retry(2):
            async with attempt as s:
                repo = s.using(comp)
                now = time.time()
                rows = await repo.range("scheduled", 0, now + 0.1, limit=1)
                if not len(rows):
                    return None
                call = rows[0]
                if call.timeout == 0:
                    repo.delete(call.id)
                else:
                    call.scheduled = now + int(call.timeout)
                    call.last_run = now
                    await repo.update(call)
    except (RaceCondition, RuntimeError):
        return None  # another worker took it
    return call


async def exec_future_call(call: np.record, caller: SystemCaller, table) -> bool:
    """Run one popped call; returns True when the system ran without error."""
    sys_def = SystemClusters().get_system(str(call.system))
    if sys_def is None:
        logger.error("future call %d targets unknown system %s; skipped", call.id, call.system)
        return False
    args = ast.literal_eval(str(call.args))
    with_lock = not call.recurring and call.timeout != 0
    try:
        if with_lock:
            await caller.call_(sys_def, *args, uuid=str(int(call.id)))
        else:
            await caller.call_(sys_def, *args)
    except Exception:
        logger.exception("future call %d (%s%s) failed", call.id, call.system, call.args)
        return False
    replay.info("[SystemResult][future] %s%s done", call.system, call.args)
    if with_lock:
        async with table.session() as s:
            repo = s.using(table.comp_cls)
            if await repo.get(id=call.id) is not None:
                repo.delete(call.id)
        await caller.remove_call_lock(sys_def.name, str(int(call.id)))
    return True


def internal_context() -> SystemContext:
    """The context of server-side calls: no user, no connection."""
    return SystemContext(
        caller=0, connection_id=0, address="localhost", group="guest", user_data={},
        timestamp=0.0, request=None, systems=None,
    )


@dataclass
class FutureCallStats:
    """What a :class:`FutureCallRunner` did since it started (for the metrics)."""
    due: int = 0  # calls it took to run
    ran: int = 0  # ... that ran without error
    failed: int = 0  # ... that failed (raised, or named no system)


class FutureCallRunner:
    """Runs the due future calls of one or more instances (one per worker)."""

    def __init__(self, namespace: str, tbl_mgrs: list) -> None:
        self.namespace = namespace
        self.targets = []
        for tbl_mgr in tbl_mgrs:
            ctx = internal_context()
            caller = SystemCaller(namespace, tbl_mgr, ctx)
            ctx.systems = caller
            self.targets += [(table, caller) for table in future_tables(tbl_mgr)]
        self.tbl_mgrs = tbl_mgrs
        self.stats = FutureCallStats()

    async def tick(self) -> int:
        """Run every call that is due now; returns how many ran."""
        ran = 0
        for table, caller in self.targets:
            while (call := await pop_upcoming_call(table)) is not None:
                ran += await self._run_call(call, caller, table)
        return ran

    async def _run_call(self, call: np.record, caller: SystemCaller, table) -> bool:
        self.stats.due += 1
        ok = await exec_future_call(call, caller, table)
        if ok:
            self.stats.ran += 1
        else:
            self.stats.failed += 1
        return ok

    async def run_forever(self, jitter: bool = True) -> None:
        """Pop and run due calls until cancelled (``jitter`` spreads worker starts)."""
        for tbl_mgr in self.tbl_mgrs:
            await clean_expired_call_locks(tbl_mgr)
        if not self.targets:
            return
        if jitter:
            await asyncio.sleep(random.random())
        while True:
            try:
                await self._run_next()
            except asyncio.CancelledError:
                raise
            except Exception:
                if cancel_requested():  # a client library swallowed the cancellation
                    raise asyncio.CancelledError from None
                logger.exception("the future call loop failed; continuing")
                await asyncio.sleep(1)

    async def _run_next(self) -> None:
        """Wait for the soonest due call of any table (at most a second), then run it."""
        soonest = None
        for table, caller in self.targets:
            due = await next_due(table)
            if due is not None and (soonest is None or due < soonest[0]):
                soonest = (due, table, caller)
        if soonest is None:
            await asyncio.sleep(1)
            return
        due, table, caller = soonest
        await asyncio.sleep(max(0.0, due - time.time()))
        call = await pop_upcoming_call(table)
        if call is not None:
            await self._run_call(call, caller, table)


__all__ = [
    "FutureCallRunner",
    "FutureCalls",
    "SystemLock",
    "cancel_future_call",
    "create_future_call",
    "ensure_future_call",
    "exec_future_call",
    "next_due",
    "pop_upcoming_call",
]
