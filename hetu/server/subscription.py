"""The subscriptions of one connection: ``sub`` / ``unsub`` and the ``updt`` it is sent.

A subscription joins the worker's shared shape of its query (:mod:`.broker`,
:mod:`.shapes`). What is left per connection is what differs between subscribers of a
shape: the sub id, the rows this connection may read (only for components with OWNER or
row-level permissions; for the others every subscriber sees the whole window and shares
one encoded frame) and the connection's own compression and encryption (its send loop).
While a change of the connection's login is being checked, its pushes wait, so nothing
is shown to an identity it no longer has.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..common.permission import Permission
from ..common.tasks import cancel_and_wait
from .broker import ChannelFanout, Join
from .protocol import BAD_SUBS, NIL, ProtocolViolation, pack, sub_get_frame, sub_range_frame, updt_frame
from .shapes import Change, RangeShape, RowShape, Shape
from .sub_requests import NO_ROW, NO_ROWS, GetRequest, RangeRequest, UnknownComponent, parse_sub

if TYPE_CHECKING:
    from .client_connection import ClientConnection

logger = logging.getLogger("HeTu.root")

REVALIDATE = None  # a deferred item: re-check every subscription for a changed identity


class Subscriber:
    """One subscription of one connection: a member of a shape."""

    __slots__ = ("owner", "sub_id", "packed_id", "shape", "fanout", "shown")

    def __init__(self, owner: ConnectionSubscriptions, sub_id: str, shape: Shape, fanout: ChannelFanout,
                 shown: set[int] | None) -> None:
        self.owner = owner
        self.sub_id = sub_id
        self.packed_id = pack(sub_id)
        self.shape = shape
        self.fanout = fanout
        # the rows this connection was shown, for components it may read only in part
        # (None: it sees the whole window)
        self.shown = shown

    def deliver(self, changes: list[Change], frames: dict[bytes, bytes]) -> None:
        """Called by the fan-out with a shape's delta (``frames`` caches the frames of
        subscribers that see every row, by sub id)."""
        self.owner.deliver(self, changes, frames)


class ConnectionSubscriptions:
    """The subscriptions of one connection."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.subs: dict[str, Subscriber] = {}
        # pushes held back while a change of the connection's login is checked
        self._deferred: list[tuple[Subscriber | None, list[Change] | None]] = []
        self._drain: asyncio.Task | None = None
        self._closed = False
        self.metrics = conn.server.metrics  # WorkerMeters, or None: metrics are off

    # -- pushes --------------------------------------------------------------------------------

    def deliver(self, sub: Subscriber, changes: list[Change], frames: dict[bytes, bytes]) -> None:
        if self._deferred or self.conn.login.pending():
            self._defer(sub, changes)
        else:
            self._send(sub, changes, frames)

    def _defer(self, sub: Subscriber | None, changes: list[Change] | None) -> None:
        self._deferred.append((sub, changes))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._send_deferred())

    async def _send_deferred(self) -> None:
        while self._deferred:
            await self.conn.login.settled()
            items, self._deferred = self._deferred, []
            for sub, changes in items:
                if sub is REVALIDATE:
                    self._revalidate_now()
                elif self.subs.get(sub.sub_id) is sub:
                    self._send(sub, changes, {})

    def _send(self, sub: Subscriber, changes: list[Change], frames: dict[bytes, bytes]) -> None:
        if sub.shown is None:
            frame = frames.get(sub.packed_id)
            if frame is None:
                frame = frames[sub.packed_id] = updt_frame(sub.packed_id, [(c.key, c.payload) for c in changes])
            self.conn.push_nowait(frame)
            if self.metrics is not None:
                self.metrics.pushed(sub.fanout.batch_since)
            return
        ctx, comp, shown = self.conn.login.reader_ctx(), sub.shape.comp, sub.shown
        items = []
        for change in changes:
            if change.row is not None and ctx.rls_check(comp, change.row):
                shown.add(change.row_id)
                items.append((change.key, change.payload))
            elif change.row_id in shown:
                shown.discard(change.row_id)
                items.append((change.key, NIL))
        if items:
            self.conn.push_nowait(updt_frame(sub.packed_id, items))
            if self.metrics is not None:
                self.metrics.pushed(sub.fanout.batch_since)

    def revalidate(self) -> None:
        """The connection's identity changed (logout, login taken over): re-check every
        row it was shown, so rows it may no longer read are pushed as deleted and rows
        it may now read are pushed, and end the subscriptions of components it may no
        longer read at all."""
        if self._deferred or self.conn.login.pending():
            self._defer(REVALIDATE, None)
        else:
            self._revalidate_now()

    def _revalidate_now(self) -> None:
        ctx = self.conn.login.reader_ctx()
        for sub in list(self.subs.values()):
            shape = sub.shape
            window = shape.window()
            if not self._readable(shape.comp):
                self._drop(sub)
                shown = [int(r.id) for r in window] if sub.shown is None else sorted(sub.shown)
                if shown:
                    self.conn.push_nowait(updt_frame(sub.packed_id, [(pack(i), NIL) for i in shown]))
                continue
            if sub.shown is None:
                continue
            now = {int(r.id) for r in window if ctx.rls_check(shape.comp, r)}
            items = [(pack(i), NIL) for i in sorted(sub.shown - now)]
            items += [(pack(int(r.id)), shape.payload(int(r.id), r)) for r in window
                      if int(r.id) in now and int(r.id) not in sub.shown]
            sub.shown = now
            if items:
                self.conn.push_nowait(updt_frame(sub.packed_id, items))

    # -- requests ---------------------------------------------------------------------------

    def _table(self, name: str):
        return self.conn.server.table_managers[self.conn.instance].get_table(name)

    def _readable(self, comp) -> bool:
        ctx = self.conn.login.reader_ctx()
        if comp.permission_ == Permission.EVERYBODY or ctx.is_admin():
            return True
        if comp.permission_ == Permission.ADMIN:
            return False
        return bool(ctx.caller)

    async def _reject(self) -> None:
        if not self.conn.server.debug:
            raise ProtocolViolation("illegal subscription")
        await self.conn.push(BAD_SUBS)

    async def handle_sub(self, message: list) -> None:
        try:
            request = parse_sub(message, self._table, self._readable)
        except UnknownComponent:
            return await self._reject()
        if isinstance(request, GetRequest):
            await self._sub_get(request)
        elif isinstance(request, RangeRequest):
            await self._sub_range(request)
        else:
            await self.conn.push(request)
        await self._check_caps()

    async def _check_caps(self) -> None:
        ctx = self.conn.ctx
        rows = sum(isinstance(s.shape, RowShape) for s in self.subs.values())
        ranges = len(self.subs) - rows
        if rows > ctx.max_row_sub or ranges > ctx.max_index_sub:
            logger.warning("%s exceeded its subscription caps (%d rows, %d ranges)", ctx, rows, ranges)
            await self._reject()

    async def _fanout(self, table) -> ChannelFanout:
        """The table's fan-out, listening to its events before any query runs."""
        return await self.conn.server.broker(table.backend).fanout(table)

    def _subscribe(self, sub_id: str, shape: Shape, fanout: ChannelFanout, visible: list) -> None:
        if sub_id in self.subs:
            return
        shown = {int(r.id) for r in visible} if shape.rls else None
        sub = self.subs[sub_id] = Subscriber(self, sub_id, shape, fanout, shown)
        shape.subscribers[sub] = None

    def _drop(self, sub: Subscriber) -> None:
        if self.subs.get(sub.sub_id) is sub:
            del self.subs[sub.sub_id]
        sub.fanout.leave(sub.shape, sub)

    async def _sub_get(self, request: GetRequest) -> None:
        table, comp = request.table, request.table.comp_cls
        fanout = await self._fanout(table)

        def joined(shape: RowShape | None) -> None:
            row = None if shape is None else shape.row
            if row is None or self._closed or not self.conn.login.reader_ctx().rls_check(comp, row):
                self.conn.push_nowait(NO_ROW)
                return
            row_id = int(row.id)
            sub_id = f"{comp.name_}.id[{row_id}:None:1][:1]"
            self._subscribe(sub_id, shape, fanout, [row])
            self.conn.push_nowait(sub_get_frame(pack(sub_id), shape.payload(row_id, row)))

        if request.row_id is not None:
            row_id = request.row_id
            join = Join(("get", row_id), lambda: RowShape(table, fanout.client, row_id), joined)
        else:
            async def lookup():
                rows = await fanout.client.range(table.ref, request.index, request.bounds, 1, False)
                return rows[0] if len(rows) else None

            join = Join(None, None, joined, lookup)
        await fanout.join(join)

    async def _sub_range(self, request: RangeRequest) -> None:
        table, comp = request.table, request.table.comp_cls
        fanout = await self._fanout(table)
        sub_id = request.sub_id

        def joined(shape: RangeShape) -> None:
            window = shape.window()
            if shape.rls:
                ctx = self.conn.login.reader_ctx()
                window = [r for r in window if ctx.rls_check(comp, r)]
            if self._closed or (not window and not request.force):
                self.conn.push_nowait(NO_ROWS)
                return
            self._subscribe(sub_id, shape, fanout, window)
            rows = [shape.payload(int(r.id), r) for r in window]
            self.conn.push_nowait(sub_range_frame(pack(sub_id), rows))

        key = ("range", request.index, request.bounds, request.limit, request.desc)
        await fanout.join(Join(key, lambda: RangeShape(table, fanout.client, request.index, request.bounds,
                                                       request.limit, request.desc), joined))

    async def unsubscribe(self, sub_id: str) -> None:
        sub = self.subs.get(sub_id)
        if sub is not None:
            self._drop(sub)

    async def close(self) -> None:
        self._closed = True
        if self._drain is not None and self._drain is not asyncio.current_task():
            await cancel_and_wait(self._drain)
        self._deferred.clear()
        for sub in list(self.subs.values()):
            self._drop(sub)

