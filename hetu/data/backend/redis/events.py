"""Change events over Redis pub/sub: one connection per feed, shared by its users."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ....common.tasks import cancel_requested
from ..base import ChangeEvent, ChangeFeed

logger = logging.getLogger("HeTu.root")

SUBSCRIBE_TIMEOUT = 10.0
RECONNECT_MAX_SECONDS = 2.0


class RedisChangeFeed(ChangeFeed):
    """Receives the events the commit script publishes.

    A reader task owns the pub/sub connection; ``subscribe`` returns once Redis has
    confirmed the subscription, so every commit after that point is delivered.

    On a Redis Cluster the feed still uses classic SUBSCRIBE on one connection (redis-py
    places it on the node owning the first channel's slot): a Redis 7 cluster broadcasts
    every PUBLISH to all nodes, so that one connection receives the events of every slot
    and survives resharding. Sharded pub/sub (SSUBSCRIBE) would save the broadcast but
    needs a connection per node and re-subscribing whenever a slot moves.
    """

    def __init__(self, r: aioredis.Redis | RedisCluster) -> None:
        super().__init__()
        self._pubsub = r.pubsub()
        self._confirm: dict[bytes, list[asyncio.Future]] = {}

    async def subscribe(self, channel: str) -> None:
        if self._closed:
            raise ConnectionError("the change feed is closed")
        key = channel.encode()
        done = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(key, []).append(done)
        await self._pubsub.subscribe(channel)
        if self._task is None:
            self._task = asyncio.create_task(self._read(), name="hetu-redis-change-feed")
        await asyncio.wait_for(done, SUBSCRIBE_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        if not self._closed:
            await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        delay = 0.0
        reconnected = False
        while not self._closed:
            try:
                msg = await self._pubsub.get_message(timeout=None)
            except (ConnectionError, OSError, RedisError) as exc:
                # redis-py reconnects and subscribes again on the next read; whatever was
                # published meanwhile is lost, which the re-subscriptions announce below
                if cancel_requested():
                    raise asyncio.CancelledError from None
                if delay == 0.0:  # the first failed read since the feed last worked
                    self.reconnects += 1
                delay = min(max(delay * 2, 0.05), RECONNECT_MAX_SECONDS)
                logger.warning("change feed connection lost (%s); reconnecting in %.2f s", exc, delay)
                reconnected = True
                await asyncio.sleep(delay)
                continue
            if msg is None:
                continue
            delay = 0.0
            kind = msg["type"]
            if kind == "message":
                channel = msg["channel"]
                self._queue.put_nowait(ChangeEvent.decode(channel.decode(), msg["data"]))
            elif kind == "subscribe":
                waiting = self._confirm.pop(msg["channel"], [])
                for fut in waiting:
                    if not fut.done():
                        fut.set_result(None)
                if reconnected and not waiting:
                    logger.info("change feed subscribed again to %s", msg["channel"].decode())
                    self._queue.put_nowait(ChangeEvent.missed(msg["channel"].decode()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_task()
        await self._pubsub.aclose()
