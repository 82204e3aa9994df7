"""Tell a logged-in connection at once when its login is taken over.

When user U logs in on a second connection, :func:`hetu.elevate` sets the first
connection's ``Connection.owner`` to 0 (it is *kicked*). The reference notices this only
on the kicked connection's next call, so meanwhile it kept receiving U's OWNER rows and
its ``on_disconnect`` ran as U, marking U offline although U's new connection was online.

Here every worker listens to the change events of the ``Connection`` table (through the
shared :class:`~hetu.server.broker.SubscriptionBroker`, so no extra pub/sub
connection) and, when the row of one of its logged-in connections changes, re-reads it
from the master. A connection whose row no longer names its user is demoted at once
(see :meth:`ClientConnection.kicked`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..endpoint.connection import Connection

if TYPE_CHECKING:
    from .connection import ClientConnection
    from .state import ServerState

logger = logging.getLogger("HeTu.root")


class LoginWatcher:
    """The logged-in connections of one worker and instance, by ``Connection`` row id."""

    def __init__(self, server: ServerState, instance: str) -> None:
        self.table = server.table_managers[instance].get_table(Connection)
        self.broker = server.broker(self.table.backend)
        self.channel = self.table.backend.master.change_channel(self.table.ref)
        self.watched: dict[int, ClientConnection] = {}
        self._listening = False

    @classmethod
    def of(cls, server: ServerState, instance: str) -> LoginWatcher:
        watcher = server.login_watchers.get(instance)
        if watcher is None:
            watcher = server.login_watchers[instance] = cls(server, instance)
        return watcher

    async def watch(self, conn: ClientConnection) -> None:
        """Follow ``conn``'s row; the caller checks the row once afterwards (a takeover
        committed before the broker listened is not announced again)."""
        self.watched[conn.ctx.connection_id] = conn
        if not self._listening:
            self._listening = True
            await self.broker.add(self.channel, self)

    def unwatch(self, conn: ClientConnection) -> None:
        if self.watched.get(conn.ctx.connection_id) is conn:
            del self.watched[conn.ctx.connection_id]

    def notify(self, event) -> None:
        """Called by the broker, in feed order, for every change of the table."""
        if event.gap:  # changes may have been missed: check every login
            for conn in list(self.watched.values()):
                conn.login_changed()
            return
        for row_id in event.row_ids:
            conn = self.watched.get(row_id)
            if conn is not None:
                conn.login_changed()

    async def owner_of(self, connection_id: int) -> int | None:
        """The user the ``Connection`` row names now (None: the row is gone)."""
        row = await self.table.backend.master.get(self.table.ref, connection_id)
        return None if row is None else int(row.owner)
