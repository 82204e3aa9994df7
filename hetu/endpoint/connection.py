"""Connections: the ``Connection`` row of every client, login (``elevate``) and kicking."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..common.permission import Permission
from ..data.backend.errors import RaceCondition
from ..data.component import BaseComponent, define_component, property_field

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

# The limits ENDPOINT_CALL_IDLE_TIMEOUT and MAX_ANONYMOUS_CONNECTION_BY_IP reach this
# module through the connection's context (``ctx.idle_timeout``,
# ``ctx.max_anonymous_by_ip``), set from the server's config when it opens.
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
ELEVATE_SEND_LIMIT_FACTOR = 10
ELEVATE_SUBSCRIPTION_FACTOR = 50


@define_component(namespace="core", volatile=True, permission=Permission.ADMIN, force=True)
class Connection(BaseComponent):
    """One row per open client connection (volatile: ``hetu upgrade`` wipes it).

    Stored exactly as HeTu stores it (same columns, defaults and schema hash), so a HeTu
    database is served as it is. The ``device`` column is shadowed by NumPy's
    ``ndarray.device`` attribute on NumPy 2: read it as ``row["device"]``, not
    ``row.device`` (assigning ``row.device = ...`` does reach the column).
    """

    owner: np.int64 = property_field(0, index=True)
    address: str = property_field("", index=True, dtype="U32")
    device: str = property_field("", dtype="U32")
    device_id: str = property_field("", dtype="U128")
    admin: str = property_field("", dtype="U16")
    # `0`, not `0.0`: the default is written into the schema JSON as given, and HeTu's
    # schema hash was computed from `0`
    created: np.float64 = property_field(0)
    last_active: np.float64 = property_field(0)


def _table(tbl_mgr):
    table = tbl_mgr.get_table(Connection)
    if table is None:
        raise RuntimeError("the Connection table is not served (were clusters built?)")
    return table


async def new_connection(tbl_mgr, address: str, max_anonymous_by_ip: int = 0) -> int:
    """Insert this client's ``Connection`` row; returns its id.

    Refuses (``RuntimeError``) when ``max_anonymous_by_ip`` (the server's
    ``MAX_ANONYMOUS_CONNECTION_BY_IP``; 0: no limit) anonymous connections from
    ``address`` already exist (loopback is exempt).
    """
    table = _table(tbl_mgr)
    limit = max_anonymous_by_ip
    async for attempt in table.session().retry(5):
        async with attempt as s:
            repo = s.using(Connection)
            if limit and address not in LOCAL_ADDRESSES:
                same_ip = await repo.range("address", address, address, limit=limit + 1000)
                anonymous = int(np.count_nonzero(same_ip.owner == 0)) if len(same_ip) else 0
                if anonymous >= limit:
                    logger.warning("refused %s: %d anonymous connections from it", address, anonymous)
                    raise RuntimeError(
                        f"too many anonymous connections from {address} ({anonymous}); "
                        f"possibly an attack"
                    )
            row = Connection.new_row()
            row.address = address[:32]
            row.created = row.last_active = time.time()
            await repo.insert(row)
    return int(row.id)


async def del_connection(tbl_mgr, connection_id: int) -> None:
    """Delete a ``Connection`` row (the client went away)."""
    table = _table(tbl_mgr)
    async for attempt in table.session().retry(5):
        async with attempt as s:
            repo = s.using(Connection)
            if await repo.get(id=connection_id) is not None:
                repo.delete(connection_id)


async def elevate(ctx, user_id: int, kick_logged_in: bool = True) -> tuple[bool, str]:
    """Log this connection in as ``user_id``; returns ``(ok, reason)``.

    Another connection logged in as the same user is kicked (a server demotes or closes
    it at once, see ``hetu/server/login.py``) when ``kick_logged_in`` is true or it has been idle longer than
    ``ENDPOINT_CALL_IDLE_TIMEOUT`` (``ctx.idle_timeout``); otherwise the login is refused with
    ``USER_ALREADY_LOGGED_IN``; user id 0 (anonymous) is refused with ``INVALID_USER_ID``.
    On success ``ctx.caller`` is set, send limits grow ×10 and subscription caps ×50.
    This is a transaction of its own: it is not undone when the calling system's
    transaction is.
    """
    if not ctx.connection_id:
        raise AssertionError("elevate needs an initialised connection (ctx.connection_id is 0)")
    if ctx.caller:
        return False, "CURRENT_CONNECTION_ALREADY_ELEVATED"
    user_id = int(user_id)
    if user_id == 0:  # the anonymous caller: "logging in" as it would only raise the limits
        return False, "INVALID_USER_ID"
    table = _table(ctx.systems.tbl_mgr)
    async for attempt in table.session().retry(5):
        async with attempt as s:
            repo = s.using(Connection)
            others = await repo.range("owner", user_id, user_id, limit=-1)
            now = time.time()
            for other in others:
                if other.id == ctx.connection_id:
                    continue
                idle = now - other.last_active
                if not kick_logged_in and idle <= ctx.idle_timeout:
                    return False, "USER_ALREADY_LOGGED_IN"
                other.owner = 0
                await repo.update(other)
            mine = await repo.get(id=ctx.connection_id)
            if mine is None:
                raise RaceCondition("own Connection row is missing")
            mine.owner = user_id
            mine.last_active = now
            await repo.update(mine)
    ctx.caller = user_id
    ctx.client_limits = [[n * ELEVATE_SEND_LIMIT_FACTOR, w] for n, w in ctx.client_limits]
    ctx.server_limits = [[n * ELEVATE_SEND_LIMIT_FACTOR, w] for n, w in ctx.server_limits]
    ctx.max_row_sub *= ELEVATE_SUBSCRIPTION_FACTOR
    ctx.max_index_sub *= ELEVATE_SUBSCRIPTION_FACTOR
    replay.info("[Elevate] %s logged in as %d", ctx, user_id)
    return True, "SUCCESS"


def demote(ctx) -> None:
    """Make ``ctx`` anonymous again: ``caller`` 0, ``group`` ``"guest"``, and the limits
    :func:`elevate` raised back to what an anonymous connection has."""
    if not ctx.caller:
        return
    ctx.caller = 0
    ctx.group = "guest"
    ctx.client_limits = [[n // ELEVATE_SEND_LIMIT_FACTOR, w] for n, w in ctx.client_limits]
    ctx.server_limits = [[n // ELEVATE_SEND_LIMIT_FACTOR, w] for n, w in ctx.server_limits]
    ctx.max_row_sub //= ELEVATE_SUBSCRIPTION_FACTOR
    ctx.max_index_sub //= ELEVATE_SUBSCRIPTION_FACTOR


async def logout(ctx) -> bool:
    """Log this connection out (not in HeTu); returns False when it was not logged in.

    The connection's ``Connection`` row loses its owner and ``ctx`` becomes anonymous
    (see :func:`demote`); on a server, rows the connection may no longer read are
    withdrawn from its subscriptions (pushed as deleted) and nothing of the user is
    pushed to it afterwards. Like :func:`elevate`, this is a transaction of its own.
    """
    if not ctx.caller:
        return False
    table = _table(ctx.systems.tbl_mgr)
    async for attempt in table.session().retry(5):
        async with attempt as s:
            repo = s.using(Connection)
            mine = await repo.get(id=ctx.connection_id)
            if mine is not None and int(mine.owner) == int(ctx.caller):
                mine.owner = 0
                await repo.update(mine)
    replay.info("[Logout] %s logged out", ctx)
    demote(ctx)
    return True


class ConnectionAliveChecker:
    """Detects kicked connections and refreshes ``last_active`` now and then.

    ``login_watched``: something else notices a takeover as it happens (a server's
    login watch, ``hetu/server/login.py``), so the ``Connection`` row is read
    only when ``last_active`` is due for a refresh, not on every call.
    """

    def __init__(self, tbl_mgr, login_watched: bool = False) -> None:
        self.tbl_mgr = tbl_mgr
        self.login_watched = login_watched
        self._last_refresh = 0.0

    def due(self, ctx) -> bool:
        """Whether :meth:`is_illegal` has to read the row now (it returns False when
        not): a logged-in connection that is not watched, or whose ``last_active`` is
        due for a refresh. Lets a caller skip the coroutine on most calls."""
        return bool(ctx.caller) and (
            not self.login_watched or time.time() - self._last_refresh > ctx.idle_timeout / 5)

    async def is_illegal(self, ctx) -> bool:
        """True when this logged-in connection was kicked or its row is gone."""
        if not self.due(ctx):
            return False
        table = _table(self.tbl_mgr)
        try:
            async with table.session() as s:
                repo = s.using(Connection)
                row = await repo.get(id=ctx.connection_id)
                if row is None or int(row.owner) != int(ctx.caller):
                    return True
                now = time.time()
                if now - self._last_refresh > ctx.idle_timeout / 5:
                    self._last_refresh = now
                    row.last_active = now
                    await repo.update(row)
        except RaceCondition:
            pass  # the row changed meanwhile (a kick shows on the next call)
        return False
