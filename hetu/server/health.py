"""Health checks for load balancers and orchestrators: ``/healthz`` and ``/readyz``.

``GET /healthz`` answers 200 while the worker process runs its event loop (a liveness
probe: restart the server when it fails). ``GET /readyz`` answers 200 when this worker
can serve players — it accepts connections, the tables of every instance were created
or checked, and every backend (master and replicas) answers a read within
:data:`READY_TIMEOUT` seconds — and 503 otherwise (a readiness probe: send no players
while it fails). Both answer a small JSON object; neither needs a token nor says more
than which check failed (the reason is in the server log).

A backend check costs one read per backend; probes arriving together share one check,
and a result is reused for :data:`READY_CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from sanic import Sanic, response

if TYPE_CHECKING:
    from .state import ServerState

logger = logging.getLogger("HeTu.root")

READY_TIMEOUT = 2.0
READY_CACHE_SECONDS = 0.5


class Readiness:
    """The readiness of one worker, checked on demand."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._checking: asyncio.Task | None = None
        self._result: tuple[float, dict] | None = None
        self._unreachable: set[str] = set()  # logged once until they answer again

    async def report(self) -> dict:
        """``{"ready": bool, "accepting": bool, "tables": bool, "backends": {name: bool}}``."""
        cached = self._result
        if cached is not None and time.monotonic() - cached[0] < READY_CACHE_SECONDS:
            return cached[1]
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check(), name="hetu-readyz")
        return await asyncio.shield(self._checking)

    async def _check(self) -> dict:
        state = self.state
        instances = state.config.get("INSTANCES") or []
        tables = bool(instances) and all(instance in state.table_managers for instance in instances)
        backends = {}
        for name, table in self._probe_tables().items():
            backends[name] = await self._reachable(name, table)
        report = {
            "ready": state.accepting and tables and all(backends.values()) and bool(backends),
            "accepting": state.accepting,
            "tables": tables,
            "backends": backends,
        }
        self._result = (time.monotonic(), report)
        return report

    def _probe_tables(self) -> dict:
        """A table of each backend the server uses, by the backend's first name in ``BACKENDS``."""
        names = {}
        for name, backend in self.state.backends.items():
            names.setdefault(id(backend), name)
        tables = {}
        for tbl_mgr in self.state.table_managers.values():
            for table in tbl_mgr.tables.values():
                name = names.get(id(table.backend))
                if name is not None:
                    tables.setdefault(name, table)
        for name in names.values():
            tables.setdefault(name, None)  # a configured backend that no table uses yet
        return tables

    async def _reachable(self, name: str, table) -> bool:
        if table is None:
            return False
        backend = table.backend
        try:
            for client in (backend.master, *backend.servants):
                await asyncio.wait_for(client.get(table.ref, 0), READY_TIMEOUT)
        except Exception as exc:
            if name not in self._unreachable:
                self._unreachable.add(name)
                logger.warning("readyz: backend %s does not answer (%s: %s)", name, type(exc).__name__, exc)
            return False
        if name in self._unreachable:
            self._unreachable.discard(name)
            logger.info("readyz: backend %s answers again", name)
        return True


def add_health_routes(app: Sanic) -> None:
    """``/healthz`` and ``/readyz`` on ``app`` (the worker's :class:`ServerState` is ``app.ctx.hetu``)."""

    async def healthz(request):
        return response.json({"alive": True, "pid": os.getpid()})

    async def readyz(request):
        state: ServerState = request.app.ctx.hetu
        if state.readiness is None:
            state.readiness = Readiness(state)
        report = await state.readiness.report()
        return response.json(report, status=200 if report["ready"] else 503)

    app.add_route(healthz, "/healthz", methods=["GET", "HEAD"], name="healthz")
    app.add_route(readyz, "/readyz", methods=["GET", "HEAD"], name="readyz")
