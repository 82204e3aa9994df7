"""A client session that survives dropped connections.

::

    async def login(client):
        await client.call("user_login", 1001, "Alice")

    async with HeTuSession(url, auth_key="password123", on_connect=login) as session:
        messages = await session.range("ChatMessage", "id", 0, 2**63 - 1, limit=100)
        await session.call("user_chat", "hello")

When the connection drops, the session connects again (with growing pauses), runs
``on_connect`` (the login) and subscribes again to every live subscription. The live
objects stay the same: the rows that changed meanwhile arrive as ordinary changes
(inserts, updates, deletes), so a game's view stays consistent.

A call that was in flight when the connection dropped raises :class:`ConnectionClosed`
(it may or may not have run: calls are not repeated behind the caller's back). Calls
made while the session is reconnecting wait for it, up to ``call_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ..common.tasks import cancel_and_wait
from .connection import HeTuClient
from .errors import ConnectionClosed
from .live import LiveRange, LiveRow, LiveSubscription

logger = logging.getLogger("HeTu.client")


class HeTuSession:
    """A client that reconnects by itself: calls wait for the new connection, live subscriptions
    carry over (see the module docstring for an example)."""

    def __init__(
        self,
        url: str,
        auth_key: str | None = None,
        on_connect: Callable[[HeTuClient], Awaitable[Any]] | None = None,
        min_delay: float = 0.1,
        max_delay: float = 5.0,
        call_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.auth_key = auth_key
        self.on_connect = on_connect
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.client: HeTuClient | None = None
        self.connections = 0  # how many times a connection was made
        self._subs: list[LiveSubscription] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> HeTuSession:
        """Connect and run ``on_connect``; errors of this first attempt are raised."""
        if self._supervisor is None:
            await self._connect_once()
            self._supervisor = asyncio.create_task(self._keep_connected(), name="hetu-session")
        return self

    async def close(self) -> None:
        """Close for good; live subscriptions end."""
        self._closing = True
        await cancel_and_wait(self._supervisor)
        self._supervisor = None
        if self.client is not None:
            await self.client.close()
        for live in self._subs:
            live._end()
        self._subs.clear()

    async def __aenter__(self) -> HeTuSession:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self.client is not None and not self.client.closed

    async def wait_connected(self, timeout: float | None = None) -> HeTuClient:
        """The current connection, waiting up to ``timeout`` seconds for a reconnect."""
        if self._closing:
            raise ConnectionClosed("the session is closed")
        if self.client is not None and self.client.closed:
            self._ready.clear()  # lost just now; the reconnect loop has not noticed yet
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise ConnectionClosed(f"not connected to {self.url} after {timeout}s") from None
        assert self.client is not None
        return self.client

    async def _connect_once(self) -> None:
        client = await HeTuClient.connect(self.url, self.auth_key, timeout=self.connect_timeout)
        client.end_live_on_close = False  # they are restored on the next connection
        try:
            if self.on_connect is not None:
                await self.on_connect(client)
            for live in list(self._subs):
                await client._subscribe_live(live.request, live=live)
        except BaseException:
            await client.close(end_live=False)  # the live objects already restored stay the session's
            raise
        self.client = client
        self.connections += 1
        self._ready.set()

    async def _keep_connected(self) -> None:
        while not self._closing:
            assert self.client is not None
            await self.client.wait_closed()
            self._ready.clear()
            logger.warning("connection to %s lost; reconnecting", self.url)
            delay = self.min_delay
            while not self._closing:
                await asyncio.sleep(delay * (0.5 + random.random()))
                try:
                    await self._connect_once()
                    logger.info("reconnected to %s", self.url)
                    break
                except Exception as exc:  # the server is down, or on_connect failed
                    logger.warning("reconnecting to %s failed: %s", self.url, exc)
                    delay = min(delay * 2, self.max_delay)

    # -- the client API, across reconnects -----------------------------------------------

    async def call(self, name: str, *args: Any) -> Any:
        """:meth:`HeTuClient.call` on the current connection (waiting for a reconnect)."""
        client = await self.wait_connected(self.call_timeout)
        return await client.call(name, *args)

    async def get(self, component: str | type, index: str, value: Any) -> LiveRow | None:
        """A :class:`LiveRow` restored after reconnects (``None`` when there is no row)."""
        live = await (await self.wait_connected(self.call_timeout)).get(component, index, value)
        return self._track(live)

    async def range(
        self, component: str | type, index: str, left: Any, right: Any = None, limit: int = 10,
        desc: bool = False, force: bool = True,
    ) -> LiveRange:
        """A :class:`LiveRange` restored after reconnects."""
        client = await self.wait_connected(self.call_timeout)
        live = await client.range(component, index, left, right, limit, desc, force)
        return self._track(live)

    def _track(self, live: Any) -> Any:
        if live is not None and live not in self._subs:
            live._owner = self
            self._subs.append(live)
        return live

    async def _unsubscribe(self, live: LiveSubscription) -> None:
        if live in self._subs:
            self._subs.remove(live)
        if self.client is not None and not self.client.closed:
            await self.client._unsubscribe(live)
        live._end()


__all__ = ["HeTuSession"]
