"""Row subscriptions: ``sub get`` / ``sub range`` and the ``updt`` pushes.

One :class:`SubscriptionBroker` per worker and backend owns a single change feed
(one pub/sub connection) and fans events out to the connections that care. A
connection subscribes to a table's events *before* running its initial query, so no
change falls in between; pushes are coalesced: whatever arrives while a connection's
update is being computed is folded into the next one, so a burst yields one ``updt``
per subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.permission import Permission
from ..common.tasks import cancel_and_wait
from ..data.backend.base import ChangeEvent
from ..data.backend.bounds import normalize_bounds

if TYPE_CHECKING:
    from .connection import ClientConnection

logger = logging.getLogger("HeTu.root")

INT64 = np.iinfo(np.int64)
# A string value or bound of a subscription may be this long, or one longer than its
# column's width: a range subscription keeps its bounds (and its id, which spells them
# out) while it lasts, so megabyte bounds times the subscription cap would pin a lot of
# memory per connection.
MAX_BOUND_LENGTH = 1024


def row_to_wire(row: np.record) -> dict:
    """A row as the client sees it: plain values, no ``_version``."""
    return {name: value for name, value in zip(row.dtype.names, row.item()) if name != "_version"}


class SubscriptionBroker:
    """Shares one change feed between all connections of a worker."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.feed = None
        self.listeners: dict[str, set] = {}
        self._pump: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.generation: dict[str, int] = {}  # channel -> change events received so far
        self._inflight: dict[tuple, asyncio.Future] = {}

    async def shared_read(self, key: tuple, channel: str, read) -> Any:
        """Run ``read()`` once for all identical refreshes of one burst.

        Many connections watching the same rows refresh them after the same change
        event. A read already running is shared when it started after every event of
        ``channel`` received so far (the generation is part of the key), so the result
        reflects each refresher's events; otherwise a new read starts.
        """
        key = (*key, channel, self.generation.get(channel, 0))
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(read())
            self._inflight[key] = future
            future.add_done_callback(lambda f, k=key: self._forget(k, f))
        return await asyncio.shield(future)

    def _forget(self, key: tuple, future: asyncio.Future) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # retrieved here; every waiter got it too

    async def add(self, channel: str, listener: Any) -> None:
        async with self._lock:
            if self.feed is None:
                self.feed = self.backend.change_feed()
            if channel not in self.listeners:
                self.listeners[channel] = set()
                await self.feed.subscribe(channel)
            self.listeners[channel].add(listener)
            if self._pump is None:
                self._pump = asyncio.create_task(self._run(), name="hetu-subscription-broker")

    async def remove(self, channel: str, listener: Any) -> None:
        async with self._lock:
            listeners = self.listeners.get(channel)
            if listeners is None:
                return
            listeners.discard(listener)
            if not listeners:
                del self.listeners[channel]
                await self.feed.unsubscribe(channel)

    async def _run(self) -> None:
        while True:
            try:
                event = await self.feed.get()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the feed gave up (its connection broke for good)
                logger.error("the change feed failed (%s: %s); opening a new one", type(exc).__name__, exc)
                await self._replace_feed()
                continue
            if event is not None:
                self._dispatch(event)

    def _dispatch(self, event: ChangeEvent) -> None:
        self.generation[event.channel] = self.generation.get(event.channel, 0) + 1
        for listener in list(self.listeners.get(event.channel, ())):
            listener.notify(event)

    async def _replace_feed(self) -> None:
        """A new feed subscribed to every channel; then every listener is told it may
        have missed changes (nothing is silently lost)."""
        delay = 0.1
        while True:
            try:
                async with self._lock:
                    old, self.feed = self.feed, self.backend.change_feed()
                    with contextlib.suppress(Exception):
                        await old.close()
                    for channel in list(self.listeners):
                        await self.feed.subscribe(channel)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("opening a new change feed failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        for channel in list(self.listeners):
            self._dispatch(ChangeEvent.missed(channel))

    async def close(self) -> None:
        if self._pump is not None:
            await cancel_and_wait(self._pump)
        if self.feed is not None:
            await self.feed.close()


class Subscription:
    def __init__(self, sub_id: str, table, client) -> None:
        self.sub_id = sub_id
        self.table = table
        self.client = client  # a backend client (a replica when configured)
        self.channel = client.change_channel(table.ref)

    def interested(self, events: list[ChangeEvent]) -> bool:
        raise NotImplementedError

    def shown_ids(self) -> set[int]:
        """The rows the client may currently hold for this subscription."""
        raise NotImplementedError

    async def changes(self, ctx, events: list[ChangeEvent], broker: SubscriptionBroker) -> dict:
        """The delta to push: ``{row_id: row or None}`` (rows the user may read)."""
        raise NotImplementedError


class RowSubscription(Subscription):
    def __init__(self, sub_id, table, client, row_id: int) -> None:
        super().__init__(sub_id, table, client)
        self.row_id = row_id

    def interested(self, events) -> bool:
        return any(e.gap or self.row_id in e.row_ids for e in events)

    def shown_ids(self) -> set[int]:
        return {self.row_id}

    async def changes(self, ctx, events, broker: SubscriptionBroker) -> dict:
        row = await broker.shared_read(
            (id(self.client), "get", self.row_id), self.channel,
            lambda: self.client.get(self.table.ref, self.row_id))
        visible = row is not None and ctx.rls_check(self.table.comp_cls, row)
        return {self.row_id: row_to_wire(row) if visible else None}


class RangeSubscription(Subscription):
    def __init__(self, sub_id, table, client, index, bounds, limit, desc, tracked: set[int]) -> None:
        super().__init__(sub_id, table, client)
        self.index, self.bounds, self.limit, self.desc = index, bounds, limit, desc
        self.tracked = tracked

    def interested(self, events) -> bool:
        return any(e.gap or self.index in e.indexes or self.tracked.intersection(e.row_ids) for e in events)

    def shown_ids(self) -> set[int]:
        return set(self.tracked)

    async def changes(self, ctx, events, broker: SubscriptionBroker) -> dict:
        rows = await broker.shared_read(
            (id(self.client), "range", self.index, self.bounds, self.limit, self.desc), self.channel,
            lambda: self.client.range(self.table.ref, self.index, self.bounds, self.limit, self.desc))
        current = {int(r.id): r for r in rows}
        if any(e.gap for e in events):  # changes may have been missed: every row may differ
            touched = set(current)
        else:
            touched = {rid for e in events for rid in e.row_ids}
        delta: dict = {}
        for rid in self.tracked - current.keys():
            delta[rid] = None
        for rid, row in current.items():
            if rid not in self.tracked or rid in touched:
                delta[rid] = row_to_wire(row) if ctx.rls_check(self.table.comp_cls, row) else None
        # rows that never were visible and still are not: nothing to tell
        for rid in [r for r, v in delta.items() if v is None and r not in self.tracked]:
            del delta[rid]
        self.tracked = {rid for rid, row in current.items() if ctx.rls_check(self.table.comp_cls, row)}
        return delta


def _check_length(comp, index: str, value: Any) -> None:
    """A string value or bound longer than ``MAX_BOUND_LENGTH`` (and its column) is a
    protocol violation."""
    from .connection import ProtocolViolation

    if not isinstance(value, (str, bytes)) or len(value) <= MAX_BOUND_LENGTH:
        return
    dt = comp.dtype_map_.get(index)
    width = dt.itemsize // (4 if dt.kind == "U" else 1) if dt is not None and dt.kind in "US" else 0
    if len(value) > width + 1:  # one more for a leading "(" or "["
        raise ProtocolViolation(f"sub: a bound of {comp.name_}.{index} is {len(value)} long")


def _beyond_column(dt: np.dtype, value: Any) -> bool:
    """``value`` is a number an integer column cannot hold (range bounds are clamped to
    the column, an equality must not be)."""
    if dt.kind not in "iu" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    info = np.iinfo(dt)
    return not info.min <= value <= info.max


class ConnectionSubscriptions:
    """The subscriptions of one connection."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.subs: dict[str, Subscription] = {}
        self.channels: dict[str, Any] = {}  # channel -> table, registered with a broker
        self._pending: list[ChangeEvent] = []  # for every subscription
        self._retarget: dict[str, list[ChangeEvent]] = {}  # sub_id -> events for it alone
        self._opening: list[list[ChangeEvent]] = []  # events seen during initial queries
        self._withdrawn: dict[str, set[int]] = {}  # ended by revalidate(): rows to delete
        self._flusher: asyncio.Task | None = None

    # -- change events ------------------------------------------------------------------

    def notify(self, event: ChangeEvent) -> None:
        self._pending.append(event)
        for seen in self._opening:
            seen.append(event)
        self._kick()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    @contextlib.contextmanager
    def _opening_window(self):
        """Collect the events that arrive while a subscription makes its initial query:
        a flush running meanwhile does not know the subscription yet."""
        seen: list[ChangeEvent] = []
        self._opening.append(seen)
        try:
            yield seen
        finally:
            self._opening.remove(seen)

    def _opened(self, sub_id: str, seen: list[ChangeEvent]) -> None:
        """The subscription exists now: refresh it for what happened during its query."""
        if seen and sub_id in self.subs:
            self._retarget.setdefault(sub_id, []).extend(seen)
            self._kick()

    def revalidate(self) -> None:
        """The connection's identity changed (logout, login taken over): re-check every
        row it was shown, so rows it may no longer read are pushed as deleted, and end
        the subscriptions of components it may no longer read at all."""
        for sub in list(self.subs.values()):
            shown = sub.shown_ids()
            if not self._readable(sub.table.comp_cls):
                del self.subs[sub.sub_id]
                if shown:
                    self._withdrawn[sub.sub_id] = shown
            elif shown:
                self._retarget.setdefault(sub.sub_id, []).append(ChangeEvent(sub.channel, tuple(shown), ()))
        self._kick()

    async def _flush(self) -> None:
        delay = 0.0
        while self._pending or self._retarget or self._withdrawn:
            # a change of this connection's login is applied before anything is pushed
            await self.conn.login_settled()
            ctx = self.conn.reader_ctx()
            withdrawn, self._withdrawn = self._withdrawn, {}
            for sub_id, shown in withdrawn.items():
                await self.conn.push(["updt", sub_id, dict.fromkeys(shown)])
            events, self._pending = self._pending, []
            retarget, self._retarget = self._retarget, {}
            failed = False
            for sub in list(self.subs.values()):
                relevant = [e for e in events if e.channel == sub.channel] + retarget.get(sub.sub_id, [])
                if not relevant or not sub.interested(relevant):
                    continue
                try:
                    delta = await sub.changes(ctx, relevant, self._broker(sub.table))
                except Exception as exc:
                    # nothing is dropped: this subscription is refreshed again for them
                    logger.warning("refreshing subscription %s failed (%s); retrying", sub.sub_id, exc)
                    self._retarget.setdefault(sub.sub_id, []).extend(relevant)
                    failed = True
                    continue
                if delta and sub.sub_id in self.subs:
                    await self.conn.push(["updt", sub.sub_id, delta])
            if failed:
                delay = min(max(delay * 2, 0.05), 2.0)
                await asyncio.sleep(delay)
            else:
                delay = 0.0

    # -- requests ---------------------------------------------------------------------------

    def _table(self, name: Any):
        if not isinstance(name, str):
            return None
        return self.conn.server.table_managers[self.conn.instance].get_table(name)

    def _readable(self, comp) -> bool:
        ctx = self.conn.reader_ctx()
        if comp.permission_ == Permission.EVERYBODY or ctx.is_admin():
            return True
        if comp.permission_ == Permission.ADMIN:
            return False
        return bool(ctx.caller)

    def _broker(self, table) -> SubscriptionBroker:
        return self.conn.server.broker(table.backend)

    async def _reject(self) -> None:
        from .connection import BAD_SUBS, ProtocolViolation

        if not self.conn.server.debug:
            raise ProtocolViolation("illegal subscription")
        await self.conn.push(BAD_SUBS)

    async def handle_sub(self, message: list) -> None:
        from .connection import ProtocolViolation

        if len(message) < 3:
            raise ProtocolViolation("sub needs a component and an operation")
        table = self._table(message[1])
        if table is None:
            return await self._reject()
        op = message[2]
        if op == "get":
            if len(message) != 5 or not isinstance(message[3], str):
                raise ProtocolViolation("sub get takes: component, 'get', index, value")
            await self._sub_get(table, message[3], message[4])
        elif op == "range":
            if not 5 <= len(message) <= 9 or not isinstance(message[3], str):
                raise ProtocolViolation("sub range takes: component, 'range', index, left[, right, limit, desc, force]")
            args = message[4:] + [None, 10, False, True][len(message) - 5:]
            await self._sub_range(table, message[3], *args)
        elif op == "logic_query":
            await self.conn.push(["sub", None, None])
        else:
            raise ProtocolViolation(f"unknown sub operation {op!r:.40}")
        await self._check_caps()

    async def _check_caps(self) -> None:
        ctx = self.conn.ctx
        rows = sum(isinstance(s, RowSubscription) for s in self.subs.values())
        ranges = len(self.subs) - rows
        if rows > ctx.max_row_sub or ranges > ctx.max_index_sub:
            logger.warning("%s exceeded its subscription caps (%d rows, %d ranges)", ctx, rows, ranges)
            await self._reject()

    async def _subscribe_first(self, table, client):
        """Listen to the table's events before querying, so nothing is missed."""
        channel = client.change_channel(table.ref)
        if channel not in self.channels:
            await self._broker(table).add(channel, self)
            self.channels[channel] = table

    async def _sub_get(self, table, index: str, value: Any) -> None:
        from .connection import ProtocolViolation

        comp = table.comp_cls
        if index not in comp.indexes_:
            raise ProtocolViolation(f"{comp.name_} has no index {index!r:.40}")
        if not self._readable(comp):
            return await self.conn.push(["sub", None, None])
        _check_length(comp, index, value)
        try:
            if index == "id":
                row_id, bounds = int(value), None
                beyond = not INT64.min <= row_id <= INT64.max
            else:
                row_id, bounds = None, normalize_bounds(comp, index, value)
                beyond = _beyond_column(comp.dtype_map_[index], value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ProtocolViolation(f"bad sub get: {exc}") from None
        if beyond:  # no row holds a value its column cannot hold
            return await self.conn.push(["sub", None, None])
        client = table.backend.servant
        await self._subscribe_first(table, client)
        with self._opening_window() as seen:
            if bounds is None:
                row = await client.get(table.ref, row_id)
            else:
                rows = await client.range(table.ref, index, bounds, 1, False)
                row = rows[0] if len(rows) else None
        if row is None or not self.conn.reader_ctx().rls_check(comp, row):
            return await self.conn.push(["sub", None, None])
        sub_id = f"{comp.name_}.id[{int(row.id)}:None:1][:1]"
        if sub_id not in self.subs:
            self.subs[sub_id] = RowSubscription(sub_id, table, client, int(row.id))
        await self.conn.push(["sub", sub_id, row_to_wire(row)])
        self._opened(sub_id, seen)

    async def _sub_range(self, table, index, left, right, limit, desc, force) -> None:
        from .connection import ProtocolViolation

        comp = table.comp_cls
        if not isinstance(limit, int) or isinstance(limit, bool) or not isinstance(desc, bool):
            raise ProtocolViolation("sub range: limit must be an int and desc a bool")
        if not INT64.min <= limit <= INT64.max:
            raise ProtocolViolation(f"sub range: limit {limit} does not fit 64 bits")
        _check_length(comp, index, left)
        _check_length(comp, index, right)
        try:
            bounds = normalize_bounds(comp, index, left, right)
        except (ValueError, TypeError) as exc:
            raise ProtocolViolation(f"bad sub range: {exc}") from None
        if not self._readable(comp):
            return await self.conn.push(["sub", None, []])
        client = table.backend.servant
        await self._subscribe_first(table, client)
        with self._opening_window() as seen:
            rows = await client.range(table.ref, index, bounds, limit, desc)
        ctx = self.conn.reader_ctx()
        visible = [r for r in rows if ctx.rls_check(comp, r)]
        if not visible and not force:
            return await self.conn.push(["sub", None, []])
        sub_id = f"{comp.name_}.{index}[{left}:{right}:{-1 if desc else 1}][:{limit}]"
        if sub_id not in self.subs:
            tracked = {int(r.id) for r in visible}
            self.subs[sub_id] = RangeSubscription(sub_id, table, client, index, bounds, limit, desc, tracked)
        await self.conn.push(["sub", sub_id, [row_to_wire(r) for r in visible]])
        self._opened(sub_id, seen)

    async def unsubscribe(self, sub_id: str) -> None:
        self.subs.pop(sub_id, None)

    async def close(self) -> None:
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            await cancel_and_wait(self._flusher)
        self.subs.clear()
        channels, self.channels = self.channels, {}
        for channel, table in channels.items():
            await self._broker(table).remove(channel, self)
