"""The gateway every client call passes: exists → permission → arguments → kicked →
guards → body."""

from __future__ import annotations

import inspect
import logging
import reprlib
import time
from typing import Any

from ..common.permission import Permission
from .connection import ConnectionAliveChecker, del_connection, new_connection
from .definer import EndpointDefine, EndpointDefines
from .guard import ClientReject
from .response import RejectResponse

logger = logging.getLogger("HeTu.root")
replay = logging.getLogger("HeTu.replay")

# Names and arguments come from the client: a log line shows a bounded excerpt (a
# megabyte-long name or a deeply nested argument must not become a megabyte-long or
# failing log line).
_brief = reprlib.Repr()
_brief.maxlevel = 3
_brief.maxstring = _brief.maxother = 80
_brief.maxlist = _brief.maxtuple = _brief.maxdict = _brief.maxset = 8
_endpoints = EndpointDefines()  # the process-wide registry (clear() keeps the instance)


class EndpointExecutor:
    """Executes endpoints for one connection (``context``)."""

    def __init__(self, namespace: str, tbl_mgr, context, login_watched: bool = False) -> None:
        """``login_watched``: a login watch demotes this connection when its login is
        taken over, so calls need not re-read the ``Connection`` row each time (see
        :class:`ConnectionAliveChecker`)."""
        self.namespace = namespace
        self.tbl_mgr = tbl_mgr
        self.context = context
        self.alive_checker = ConnectionAliveChecker(tbl_mgr, login_watched)

    async def initialize(self, address: str) -> None:
        """Register the connection (its ``Connection`` row)."""
        if self.context.connection_id:
            return
        self.context.connection_id = await new_connection(self.tbl_mgr, address,
                                                          self.context.max_anonymous_by_ip)
        self.context.address = address

    async def terminate(self) -> None:
        if self.context.connection_id:
            await del_connection(self.tbl_mgr, self.context.connection_id)

    def _reject(self, message: str) -> None:
        replay.info(message)
        logger.warning(message)

    def execute_check(self, endpoint: str, args: tuple) -> EndpointDefine | None:
        ctx = self.context
        ep = _endpoints.get_endpoint(endpoint, self.namespace) if isinstance(endpoint, str) else None
        if ep is None:
            self._reject(f"[Rejected] {ctx} called unknown endpoint {_brief.repr(endpoint)}")
            return None
        perm = ep.permission
        if perm == Permission.EVERYBODY:
            allowed = True
        elif perm == Permission.USER:
            allowed = bool(ctx.caller)
        elif perm == Permission.ADMIN:
            allowed = ctx.is_admin()
        else:  # None, OWNER, RLS or anything unknown: fail closed
            allowed = False
        if not allowed:
            self._reject(f"[Rejected] {ctx} lacks permission {perm!r} for {endpoint}")
            return None
        if not ep.min_args <= len(args) <= ep.max_args:
            self._reject(
                f"[Rejected] {ctx} called {endpoint} with {len(args)} arguments; it takes "
                f"{ep.min_args}-{ep.max_args}"
            )
            return None
        return ep

    async def execute_(self, ep: EndpointDefine, *args: Any) -> tuple[bool, Any]:
        ctx = self.context
        ctx.timestamp = time.time()
        try:
            return True, await ep.func(ctx, *args)
        except Exception as exc:  # the client only learns that the call failed
            message = (f"[Failed] {ctx} | {ep.name}{_brief.repr(args)}: "
                       f"{type(exc).__name__}: {str(exc):.200}")
            replay.info(message)
            logger.exception(message)
            return False, f"{type(exc).__name__}: {exc}"

    async def execute(self, endpoint: str, *args: Any) -> tuple[bool, Any]:
        ep = self.execute_check(endpoint, args)
        if ep is None:
            return False, None
        ctx = self.context
        checker = self.alive_checker
        if checker.due(ctx) and await checker.is_illegal(ctx):
            self._reject(f"[Kicked] {ctx} was logged in elsewhere; refusing {endpoint}")
            return False, None
        for check in ep.guards:
            try:
                outcome = check(ctx, *args)
                if inspect.isawaitable(outcome):
                    await outcome
            except ClientReject as reject:
                replay.info("[Rejected][%s] %s %s", endpoint, reject.code, ctx)
                logger.info("%s rejected %s: %s", endpoint, ctx, reject)
                return True, RejectResponse(reject.code, reject.reason)
        return await self.execute_(ep, *args)
