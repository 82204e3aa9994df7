"""Login takeover: a connection learns at once that its user logged in elsewhere.

When user U logs in on a second connection, :func:`hetu.elevate` sets the first
connection's ``Connection.owner`` to 0 (it is *kicked*). The reference notices this only
on the kicked connection's next call, so meanwhile it kept receiving U's OWNER rows and
its ``on_disconnect`` ran as U, marking U offline although U's new connection was online.

Here every worker follows the change events of the ``Connection`` table through the
shared :class:`~hetu.server.broker.SubscriptionBroker` (no pub/sub connection of its
own): one :class:`LoginWatcher` per worker and instance. When the row of a logged-in
connection changes, its :class:`ConnectionLogin` re-reads the row from the master, and a
connection whose row no longer names its user is demoted at once. A release-mode server
then closes it (what its next call would do anyway); a debug-mode server keeps it open,
anonymous, withdraws the rows it may no longer read and refuses its calls.

The login of a connection is one :class:`LoginState`; every change of it goes through
:meth:`ConnectionLogin._move`, which refuses a change the table ``ALLOWED`` lacks::

    ANONYMOUS  --a call logs in----------------------------> LOGGED_IN
    LOGGED_IN  --its Connection row changed----------------> CHECKING
    CHECKING   --the row still names the user--------------> LOGGED_IN
    CHECKING   --taken over between calls------------------> KICKED
    CHECKING   --taken over while a call runs--------------> TAKEN_OVER
    TAKEN_OVER --the call ended (demoted only now)---------> KICKED
    LOGGED_IN, CHECKING --a call logs out------------------> ANONYMOUS
    CHECKING   --the connection ends (the check dropped)---> LOGGED_IN
    LOGGED_IN  --found taken over as the connection ends---> KICKED
    TAKEN_OVER --the connection ends during the call-------> KICKED
    ANONYMOUS, LOGGED_IN, KICKED --the connection ended----> CLOSED

``CHECKING`` holds exactly while a check of the row runs (pushes wait for it);
``TAKEN_OVER`` only while a call runs (the connection handles one call at a time).
"""

from __future__ import annotations

import asyncio
import copy
import enum
import logging
from typing import TYPE_CHECKING

from ..common.tasks import cancel_and_wait
from ..endpoint.connection import Connection, demote

if TYPE_CHECKING:
    from ..system.context import SystemContext
    from .client_connection import ClientConnection
    from .state import ServerState

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")


class LoginState(enum.Enum):
    """Where the login of one client connection stands."""

    ANONYMOUS = "anonymous"  # not logged in
    LOGGED_IN = "logged in"  # logged in; its Connection row is watched
    CHECKING = "checking"  # its row changed and is being re-read; pushes wait
    # taken over while a call runs: the call ends as the user, pushes see an anonymous reader
    TAKEN_OVER = "taken over"
    KICKED = "kicked"  # taken over and demoted: anonymous, its calls refused
    CLOSED = "closed"  # the connection ended; nothing is watched any more


# the members as module names: looking a member up on an Enum class costs about fifteen
# times a global, and the rpc and push paths test the state
ANONYMOUS = LoginState.ANONYMOUS
LOGGED_IN = LoginState.LOGGED_IN
CHECKING = LoginState.CHECKING
TAKEN_OVER = LoginState.TAKEN_OVER
KICKED = LoginState.KICKED
CLOSED = LoginState.CLOSED

ALLOWED: dict[LoginState, frozenset[LoginState]] = {
    ANONYMOUS: frozenset({LOGGED_IN, CLOSED}),
    LOGGED_IN: frozenset({CHECKING, ANONYMOUS, KICKED, CLOSED}),
    CHECKING: frozenset({LOGGED_IN, TAKEN_OVER, KICKED, ANONYMOUS}),
    TAKEN_OVER: frozenset({KICKED}),
    KICKED: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


class IllegalLoginTransition(AssertionError):
    """A change of login state that :data:`ALLOWED` does not list: a bug in the server."""

    def __init__(self, old: LoginState, new: LoginState) -> None:
        super().__init__(f"a connection's login cannot go from {old.name} to {new.name}")
        self.old, self.new = old, new


class ConnectionLogin:
    """The login of one client connection: its :class:`LoginState`, its place in the
    worker's :class:`LoginWatcher`, and the check of its ``Connection`` row.

    The connection's rpc handling sets ``in_call`` around each call and, when the caller
    changed or the state is ``TAKEN_OVER`` afterwards, awaits :meth:`call_ended`.
    """

    __slots__ = ("conn", "state", "in_call", "_watcher", "_check", "_recheck")

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.state = ANONYMOUS
        self.in_call = False  # a call of the connection is running
        self._watcher: LoginWatcher | None = None  # set while LOGGED_IN or CHECKING
        self._check: asyncio.Task | None = None  # set while CHECKING
        self._recheck = False  # the row changed again during the check

    def _move(self, new: LoginState) -> None:
        if new not in ALLOWED[self.state]:
            raise IllegalLoginTransition(self.state, new)
        self.state = new

    # -- what pushes ask ------------------------------------------------------------------

    def pending(self) -> bool:
        """A change of the login is being checked: pushes wait for :meth:`settled`."""
        return self.state is CHECKING

    async def settled(self) -> None:
        """Return once no check of the login runs."""
        if self.state is CHECKING:
            await asyncio.wait([self._check])

    def reader_ctx(self) -> SystemContext:
        """The identity pushes are filtered for: anonymous once the login was taken over,
        also while a call still runs as the user."""
        ctx = self.conn.ctx
        if self.state is TAKEN_OVER:
            ctx = copy.copy(ctx)
            demote(ctx)
        return ctx

    # -- calls ---------------------------------------------------------------------------

    async def call_ended(self, before: int) -> None:
        """After a call that changed ``ctx.caller`` (from ``before``) or was running when
        the login was taken over: demote, start watching a new login, or stop watching
        and withdraw rows after a logout."""
        if self.state is TAKEN_OVER:
            self._demote()
            return
        conn = self.conn
        now = conn.ctx.caller
        if now == before:
            return
        if before and conn.subscriptions is not None:
            conn.subscriptions.revalidate()  # logged out (or in as someone else)
        if now:
            if self.state is ANONYMOUS:
                self._watcher = LoginWatcher.of(conn.server, conn.instance)
                self._move(LOGGED_IN)
                await self._watcher.watch(self)
            self.changed()  # a takeover may have committed before the watch began
        elif self._watcher is not None:
            self._stop_watching()
            self._move(ANONYMOUS)

    def _demote(self) -> None:
        demote(self.conn.ctx)
        self._move(KICKED)

    def _stop_watching(self) -> asyncio.Task | None:
        """Leave the watcher and drop a running check (its outcome no longer matters);
        returns the dropped check, asked to stop."""
        task, self._check = self._check, None
        if task is not None:
            task.cancel()
        self._watcher.unwatch(self)
        self._watcher = None
        return task

    # -- the check -------------------------------------------------------------------------

    def changed(self) -> None:
        """The connection's ``Connection`` row changed (called by the watcher): check it,
        or check again once the running check is done."""
        if self.state is CHECKING:
            self._recheck = True
        elif self.state is LOGGED_IN:
            self._move(CHECKING)
            self._check = asyncio.create_task(self._check_login(), name=f"hetu-login-{self.conn.ctx.connection_id}")
        # in any other state the login is no longer watched: nothing to check

    async def _check_login(self) -> None:
        ctx, watcher, me = self.conn.ctx, self._watcher, asyncio.current_task()
        taken_over = False
        while self._check is me:
            self._recheck = False
            caller = ctx.caller
            if not caller:  # a running call logged out; it moves the state when it ends
                break
            try:
                owner = await watcher.owner_of(ctx.connection_id)
            except Exception as exc:  # the next call's alive check still catches a takeover
                if self._check is me:
                    logger.warning("checking the login of %s failed: %s", ctx, exc)
                break
            if owner != caller and ctx.caller == caller:
                taken_over = True
                break
            if not self._recheck:
                break
        if self._check is not me:
            return  # dropped meanwhile (a logout, or the connection ended)
        self._check = None
        if taken_over:
            self._taken_over()
        else:
            self._move(LOGGED_IN)

    def _taken_over(self) -> None:
        """Another connection logged in as this one's user: demote this one at once, or
        when its running call ends; close it (release mode) or withdraw the rows it may
        no longer read (debug mode)."""
        conn = self.conn
        replay.info("[Kicked] %s: its user logged in on another connection", conn.ctx)
        logger.info("%s was logged in elsewhere (kicked)", conn.ctx)
        self._watcher.unwatch(self)
        self._watcher = None
        if self.in_call:
            self._move(TAKEN_OVER)
        else:
            self._demote()
        if not conn.server.debug:
            conn.close_now()
        elif conn.subscriptions is not None:
            conn.subscriptions.revalidate()

    # -- the end ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Before ``on_disconnect``: stop watching; a login taken over (noticed or not
        yet) is demoted, so the connection does not log its user out elsewhere."""
        if self.state is LOGGED_IN or self.state is CHECKING:
            ctx, watcher = self.conn.ctx, self._watcher
            dropped = self._stop_watching()
            if self.state is CHECKING:
                self._move(LOGGED_IN)  # the row is read here instead
            await cancel_and_wait(dropped)
            try:
                owner = await watcher.owner_of(ctx.connection_id)
            except Exception as exc:
                logger.warning("checking the login of %s failed: %s", ctx, exc)
            else:
                if owner != ctx.caller:
                    self._demote()
        elif self.state is TAKEN_OVER:
            self._demote()
        self._move(CLOSED)


class LoginWatcher:
    """The logged-in connections of one worker and instance, by ``Connection`` row id."""

    def __init__(self, server: ServerState, instance: str) -> None:
        self.table = server.table_managers[instance].get_table(Connection)
        self.broker = server.broker(self.table.backend)
        self.channel = self.table.backend.master.change_channel(self.table.ref)
        self.watched: dict[int, ConnectionLogin] = {}
        self._listening = False

    @classmethod
    def of(cls, server: ServerState, instance: str) -> LoginWatcher:
        """The worker's watcher of ``instance``, made on first use."""
        watcher = server.login_watchers.get(instance)
        if watcher is None:
            watcher = server.login_watchers[instance] = cls(server, instance)
        return watcher

    async def watch(self, login: ConnectionLogin) -> None:
        """Follow the row of ``login``'s connection; the caller checks the row once
        afterwards (a takeover committed before the broker listened is not announced)."""
        self.watched[login.conn.ctx.connection_id] = login
        if not self._listening:
            self._listening = True
            await self.broker.add(self.channel, self)

    def unwatch(self, login: ConnectionLogin) -> None:
        """Stop following the row of ``login``'s connection."""
        if self.watched.get(login.conn.ctx.connection_id) is login:
            del self.watched[login.conn.ctx.connection_id]

    def notify(self, event) -> None:
        """Called by the broker, in feed order, for every change of the table."""
        if event.gap:  # changes may have been missed: check every login
            for login in list(self.watched.values()):
                login.changed()
            return
        for row_id in event.row_ids:
            login = self.watched.get(row_id)
            if login is not None:
                login.changed()

    async def owner_of(self, connection_id: int) -> int | None:
        """The user the ``Connection`` row names now (None: the row is gone)."""
        row = await self.table.backend.master.get(self.table.ref, connection_id)
        return None if row is None else int(row.owner)
