"""The change feed of a worker and the fan-out of its events to subscriptions.

One :class:`SubscriptionBroker` per worker and backend owns a single change feed (one
pub/sub connection, whatever the number of players) and hands each event to the
listeners of its channel: the :class:`ChannelFanout` of the table, and the login
watcher for the ``Connection`` table.

A :class:`ChannelFanout` evaluates the table's subscriptions per shape
(:mod:`.shapes`), in one task per table: events that arrive while it works are merged
into its next round, so a burst costs a few rounds, not one per event and subscriber,
and nothing waits on a timer when the worker is idle. New subscriptions join in the
same task, after the events that came before them, so the events that arrive while a
subscription's initial query runs are applied against that query's result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..common.tasks import cancel_and_wait
from ..data.backend.base import ChangeEvent
from ..data.backend.replica_monitor import safe_name
from .shapes import Change, RangeShape, RowShape, Shape

if TYPE_CHECKING:
    from ..data.backend import Backend
    from ..data.backend.base import BackendClient
    from ..data.backend.table import Table

logger = logging.getLogger("HeTu.root")

MAX_RETRY_DELAY = 2.0


class Join:
    """A subscription waiting to be added to a shape by the fan-out task.

    ``make`` builds the shape when the worker has none of this key yet; ``joined`` is
    called in the fan-out task with the up-to-date shape (it registers the subscriber
    and queues its reply, so no ``updt`` can overtake the reply) and its return value
    resolves the join. ``lookup`` (for ``sub get`` by another index) first finds the
    row, and gives the key of its shape.
    """

    __slots__ = ("key", "make", "joined", "lookup", "future")

    def __init__(self, key: tuple | None, make: Callable[[], Shape] | None,
                 joined: Callable[[Shape | None], Any], lookup=None) -> None:
        self.key, self.make, self.joined, self.lookup = key, make, joined, lookup
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()


class ChannelFanout:
    """The subscriptions of one table (one change channel) in one worker."""

    def __init__(self, channel: str, table: Table, client: BackendClient) -> None:
        self.channel = channel
        self.table = table
        self.client = client
        self.row_shapes: dict[int, RowShape] = {}
        self.range_shapes: dict[tuple, RangeShape] = {}
        self._events: list[ChangeEvent] = []
        self._joins: list[Join] = []
        self._task: asyncio.Task | None = None
        self._delay = 0.0
        # time.perf_counter() when the oldest event waiting / being applied arrived (push latency)
        self._waiting_since: float | None = None
        self.batch_since: float | None = None
        # resolved once the broker delivers the channel's events here
        self.listening: asyncio.Future = asyncio.get_running_loop().create_future()

    # -- input ----------------------------------------------------------------------------

    def notify(self, event: ChangeEvent) -> None:
        """Called by the broker, in feed order, for every event of the channel."""
        if not self._events:
            self._waiting_since = time.perf_counter()
        self._events.append(event)
        self._kick()

    async def join(self, join: Join) -> Any:
        self._joins.append(join)
        self._kick()
        return await join.future

    def leave(self, shape: Shape, subscriber: Any) -> None:
        shape.subscribers.pop(subscriber, None)
        if shape.subscribers:
            return
        if isinstance(shape, RowShape):
            if self.row_shapes.get(shape.row_id) is shape:
                del self.row_shapes[shape.row_id]
        elif self.range_shapes.get(shape.key) is shape:
            del self.range_shapes[shape.key]

    def use(self, client: BackendClient) -> None:
        """Read from ``client`` from now on (the broker's feed moved to it).

        A round in progress may be waiting on the old client (a frozen replica): it is
        stopped and started again on the new one, losing none of its events or joins.
        """
        if client is self.client:
            return
        self.client = client
        for shape in [*self.row_shapes.values(), *self.range_shapes.values()]:
            shape.client = client
        if self._task is not None and not self._task.done():
            self._task = asyncio.create_task(self._restart(self._task), name=f"hetu-fanout-{self.channel}")

    async def _restart(self, old: asyncio.Task) -> None:
        await cancel_and_wait(old)
        await self._run()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"hetu-fanout-{self.channel}")

    # -- the fan-out task ----------------------------------------------------------------------

    async def _run(self) -> None:
        while self._events or self._joins:
            events, self._events = self._events, []
            joins, self._joins = self._joins, []
            try:
                failed = await self._round(events, joins)
            except asyncio.CancelledError:  # stopped (moved to another client): keep the work
                self._events[:0] = events
                self._joins[:0] = [join for join in joins if not join.future.done()]
                raise
            if failed:
                self._events[:0] = events
                self._delay = min(max(self._delay * 2, 0.05), MAX_RETRY_DELAY)
                await asyncio.sleep(self._delay)
            else:
                self._delay = 0.0

    async def _round(self, events: list[ChangeEvent], joins: list[Join]) -> bool:
        """Apply ``events``, then add ``joins``; True if the events must be tried again."""
        failed = False
        if events:
            self.batch_since = self._waiting_since
            try:
                await self._apply(events)
            except Exception as exc:
                # nothing is dropped: the events are evaluated again (reads are of
                # current values, so a shape that already applied them pushes nothing)
                logger.warning("refreshing the subscriptions of %s failed (%s: %s); retrying",
                               self.channel, type(exc).__name__, exc)
                self._waiting_since = self.batch_since
                failed = True
        if joins:
            self.batch_since = None  # what joining pushes to others was not caused by an event
            try:
                await self._add(joins)
            except Exception as exc:  # a defect: the joiners get it, the task lives on
                logger.exception("adding subscriptions to %s failed", self.channel)
                for join in joins:
                    if not join.future.done():
                        join.future.set_exception(exc)
        return failed

    async def _apply(self, events: list[ChangeEvent]) -> None:
        if any(e.gap for e in events):  # changes may have been missed: read everything again
            for shape in [*self.row_shapes.values(), *self.range_shapes.values()]:
                self._fan_out(shape, await shape.reload())
            return
        row_ids: set[int] = set()
        indexes: set[str] = set()
        for event in events:
            row_ids.update(event.row_ids)
            indexes.update(event.indexes)
        work: list[tuple[Shape, list[int]]] = []
        for row_id in row_ids:
            shape = self.row_shapes.get(row_id)
            if shape is not None:
                work.append((shape, [row_id]))
        for shape in self.range_shapes.values():
            wanted = shape.wanted(row_ids, indexes)
            if wanted:
                work.append((shape, wanted))
        if not work:
            return
        needed = sorted({row_id for _, wanted in work for row_id in wanted})
        fresh = dict(zip(needed, await self.client.get_many(self.table.ref, needed)))
        for shape, wanted in work:
            changes = shape.apply({row_id: fresh[row_id] for row_id in wanted})
            if changes is None:
                changes = await shape.reload()
            self._fan_out(shape, changes)

    async def _add(self, joins: list[Join]) -> None:
        """Bring each joined shape up to date (one read per shape), then add its joiners."""
        groups: dict[tuple, list[Join]] = {}
        preread: dict[tuple, Any] = {}
        for join in joins:
            if join.lookup is not None:
                try:
                    row = await join.lookup()
                except Exception as exc:
                    join.future.set_exception(exc)
                    continue
                if row is None:
                    join.future.set_result(join.joined(None))
                    continue
                row_id = int(row.id)
                join.key = ("get", row_id)
                join.make = lambda row_id=row_id: RowShape(self.table, self.client, row_id)
                preread[join.key] = row
            groups.setdefault(join.key, []).append(join)
        for key, group in groups.items():
            shape = self._shape(key) or group[0].make()
            try:
                if key in preread:
                    changes = shape.set_row(preread[key])
                else:
                    changes = await shape.reload()
            except Exception as exc:
                for join in group:
                    if not join.future.done():
                        join.future.set_exception(exc)
                continue
            self._fan_out(shape, changes)
            self._register(shape)
            for join in group:
                if not join.future.done():
                    try:
                        join.future.set_result(join.joined(shape))
                    except Exception as exc:
                        join.future.set_exception(exc)
            if not shape.subscribers:
                self.leave(shape, None)

    def _shape(self, key: tuple) -> Shape | None:
        if key[0] == "get":
            return self.row_shapes.get(key[1])
        return self.range_shapes.get(key)

    def _register(self, shape: Shape) -> None:
        if isinstance(shape, RowShape):
            self.row_shapes.setdefault(shape.row_id, shape)
        else:
            self.range_shapes.setdefault(shape.key, shape)

    @staticmethod
    def _fan_out(shape: Shape, changes: list[Change]) -> None:
        if not changes or not shape.subscribers:
            return
        frames: dict[bytes, bytes] = {}  # sub id -> frame, shared by subscribers who see all
        for subscriber in list(shape.subscribers):
            subscriber.deliver(changes, frames)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        for join in self._joins:
            join.future.cancel()


class SubscriptionBroker:
    """Shares one change feed between all subscriptions and login watches of a worker.

    Reads for subscriptions go to the server the feed listens to (a read replica when
    configured), so an event never arrives before the data it announces.

    The broker follows the health of the replicas (:mod:`hetu.data.backend.replica_monitor`):
    when the replica it reads from becomes unusable, the feed and the reads move to the
    master (or another usable replica); when a replica is usable again, or the one in
    use resynchronised between two probes, they move to it. Every move announces a gap
    on every channel, so every subscription is read again in full and none stays stale.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.client = backend.servant
        self._epoch = backend.replica_epoch(self.client)
        self.feed = None
        self.listeners: dict[str, set] = {}
        self.fanouts: dict[str, ChannelFanout] = {}
        self._pump: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._follow: asyncio.Task | None = None
        self._replicas_moved = False
        self._moving_to: BackendClient | None = None  # the client a feed is being opened on
        self._closing: set[asyncio.Task] = set()  # old feeds being closed
        backend.watch_replicas(self._replica_changed)
        self.gaps = 0  # gap events received (metrics)
        self._replaced_reconnects = 0  # reconnects of the feeds replaced so far, and the replacements

    async def fanout(self, table: Table) -> ChannelFanout:
        """The fan-out of ``table``'s channel, listening to its events from now on."""
        channel = self.client.change_channel(table.ref)
        fanout = self.fanouts.get(channel)
        if fanout is None:
            fanout = self.fanouts[channel] = ChannelFanout(channel, table, self.client)
            try:
                await self.add(channel, fanout)
            except BaseException as exc:
                del self.fanouts[channel]
                fanout.listening.set_exception(exc)
                fanout.listening.exception()  # retrieved: every waiter gets it too
                raise
            fanout.listening.set_result(None)
        else:
            await asyncio.shield(fanout.listening)
        return fanout

    async def add(self, channel: str, listener: Any) -> None:
        """Send ``channel``'s events to ``listener.notify`` (once this returns)."""
        async with self._lock:
            if self.feed is None:
                self.feed = self.client.change_feed()
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
            if event is None:
                continue
            if event.gap and self.backend.suspect_replica(self.client, "the change feed lost its connection to it"):
                # it may have restarted empty: the move to another source announces the gap
                continue
            self._dispatch(event)

    @property
    def feed_reconnects(self) -> int:
        """How often the change feed lost its connection and was connected again (metrics)."""
        return self._replaced_reconnects + (self.feed.reconnects if self.feed is not None else 0)

    def _dispatch(self, event: ChangeEvent) -> None:
        if event.gap:
            self.gaps += 1
        for listener in list(self.listeners.get(event.channel, ())):
            listener.notify(event)

    async def _replace_feed(self) -> None:
        """A new feed subscribed to every channel; then every listener is told it may
        have missed changes (nothing is silently lost)."""
        delay = 0.1
        while True:
            try:
                async with self._lock:
                    # another replica (when there are several) may serve where this one failed
                    client = self._moving_to = self.backend.servant
                    feed = client.change_feed()
                    try:
                        for channel in list(self.listeners):
                            await feed.subscribe(channel)
                    except BaseException:
                        self._close_later(feed)
                        raise
                    old, self.feed = self.feed, feed
                    if old is not None:
                        self._replaced_reconnects += old.reconnects + 1
                    self.client, self._epoch = client, self.backend.replica_epoch(client)
                    for fanout in self.fanouts.values():
                        fanout.use(client)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("opening a new change feed failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self._moving_to = None
        for channel in list(self.listeners):
            self._dispatch(ChangeEvent.missed(channel))
        if old is not None:
            self._close_later(old)
        if not self.backend.is_usable(self.client):  # it failed while the feed was opened
            self._replica_changed(self.client, None)

    def _close_later(self, feed: Any) -> None:
        """Close a feed in the background: its server may be frozen, and no move waits for it."""
        task = asyncio.create_task(feed.close(), name="hetu-close-change-feed")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- replica health -----------------------------------------------------------------------

    def _replica_changed(self, client: BackendClient, state: Any) -> None:
        """Called by the backend's replica monitor on every change of a replica's state."""
        self._replicas_moved = True
        follow = self._follow
        if follow is None or follow.done():
            self._follow = asyncio.create_task(self.follow_replicas(), name="hetu-broker-replicas")
        elif client is self._moving_to and not self.backend.is_usable(client):
            # the move waits on a replica that just failed (froze, say): start it over
            self._follow = asyncio.create_task(self._follow_again(follow), name="hetu-broker-replicas")
        else:
            return
        self._follow.add_done_callback(_log_failure)

    async def _follow_again(self, stale: asyncio.Task) -> None:
        await cancel_and_wait(stale)
        self._replicas_moved = True
        await self.follow_replicas()

    def _must_move(self) -> str | None:
        """Why the feed must move (or be refreshed), or None while it is fine where it is."""
        backend, current = self.backend, self.client
        if current is backend.master:
            return "a read replica serves again" if backend.usable_servants else None
        if not backend.is_usable(current):
            return f"read replica {safe_name(current)} failed"
        if backend.replica_epoch(current) != self._epoch:
            return f"read replica {safe_name(current)} resynchronised"
        return None

    async def follow_replicas(self) -> None:
        """Move the feed and the reads to where the replicas' health says, and refresh
        every subscription in full after each move."""
        while self._replicas_moved:
            self._replicas_moved = False
            reason = self._must_move()
            if reason is None:
                continue
            async with self._lock:
                if self.feed is None:  # nothing subscribed yet: just read elsewhere from now on
                    self.client = self.backend.servant
                    self._epoch = self.backend.replica_epoch(self.client)
                    continue
            pump, self._pump = self._pump, None
            try:
                await cancel_and_wait(pump)  # it may be waiting on the old feed
                await self._replace_feed()
            finally:  # also when this move is cancelled: the feed in place keeps being read
                self._pump = asyncio.create_task(self._run(), name="hetu-subscription-broker")
            where = "the master" if self.client is self.backend.master else f"read replica {safe_name(self.client)}"
            logger.warning("full refresh of every subscription of this worker (%d tables) because %s; "
                           "subscriptions read from %s now", len(self.listeners), reason, where)

    async def close(self) -> None:
        self.backend.unwatch_replicas(self._replica_changed)
        if self._follow is not None:
            await cancel_and_wait(self._follow)
        if self._pump is not None:
            await cancel_and_wait(self._pump)
        for task in list(self._closing):
            await cancel_and_wait(task)
        for fanout in self.fanouts.values():
            await fanout.close()
        if self.feed is not None:
            await self.feed.close()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s failed", task.get_name(), exc_info=task.exception())
