"""Test your app's systems in-process, on a temporary SQLite file: the ``Sandbox``.

::

    import app
    from hetu.testing import Sandbox

    async def test_login(tmp_path):
        async with await Sandbox.create("Chat", app, db_path=tmp_path / "t.db") as sb:
            await sb.call("user_login", 1001, "Alice")
            assert (await sb.get("OnlineUser", owner=1001)).name == "Alice"

``call`` goes through the same gateway as a client (permissions, argument counts,
guards); ``call_system`` runs a system directly, like server code does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import numpy as np

from ..common.snowflake_id import SnowflakeID
from ..common.tasks import cancel_and_wait
from ..data.backend import Backend
from ..data.component import BaseComponent, ComponentDefines
from ..endpoint.connection import elevate
from ..endpoint.definer import EndpointDefines
from ..endpoint.executor import EndpointExecutor
from ..endpoint.response import RejectResponse, ResponseToClient
from ..manager import ComponentTableManager
from ..system.caller import SystemCaller
from ..system.context import SystemContext
from ..system.definer import SystemClusters
from ..system.future import FutureCallRunner

__all__ = ["CallRejected", "ConnectionClosed", "Sandbox", "sandbox_fixture"]


class CallRejected(Exception):
    """A guard rejected the call (the client would receive ``["rej", name, code]``)."""

    def __init__(self, code: str, reason: str | None = None) -> None:
        super().__init__(reason or code)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return self.reason or self.code


class ConnectionClosed(Exception):
    """The server would drop the connection: unknown endpoint, no permission, wrong
    argument count, kicked, or the endpoint raised (see ``call_system`` for the error)."""


def _wire_roundtrip(message: Any) -> Any:
    """What the client would receive: the ``rsp`` frame through msgpack and back."""
    try:
        frame = msgpack.packb(["rsp", message], use_bin_type=True)
    except TypeError as exc:
        raise TypeError(f"the response {message!r} cannot be sent to a client: {exc}") from None
    return msgpack.unpackb(frame, raw=False)[1]


def _reload(module: ModuleType) -> None:
    """Run the app module's code again (it registers its definitions anew)."""
    spec = module.__spec__
    try:
        importlib.reload(module)
    except ModuleNotFoundError:  # loaded from a file path, not importable by name
        module.__spec__ = spec
        spec.loader.exec_module(module)


def _load_app(namespace: str, app_module: ModuleType, reload_app: bool) -> None:
    clusters = SystemClusters()
    if not reload_app and clusters.is_built(namespace):
        return  # built once already: reuse the registries
    if reload_app or clusters.is_built():
        ComponentDefines().clear()
        EndpointDefines().clear()
        clusters.clear()
        _reload(app_module)
    clusters.build_clusters(namespace)
    clusters.build_endpoints()


class Sandbox:
    """An app served in-process: call its endpoints and systems, read and write rows."""

    def __init__(self, namespace: str, instance_name: str, backend: Backend, tbl_mgr: ComponentTableManager) -> None:
        self.namespace = namespace
        self.instance_name = instance_name
        self.backend = backend
        self.tbl_mgr = tbl_mgr
        self._scheduler: asyncio.Task | None = None

    @classmethod
    async def create(
        cls,
        namespace: str,
        app_module: ModuleType,
        *,
        db_path: str | Path | None = None,
        instance_name: str = "test",
        worker_id: int = 1,
        reload_app: bool = False,
        db_url: str | None = None,
    ) -> Sandbox:
        """Build the app's clusters, open ``db_path`` (SQLite) and create the tables.

        ``db_url`` serves the sandbox from another database instead, e.g. a Redis
        started for the tests (``redis://127.0.0.1:6390/0``).
        """
        if db_url is None:
            if db_path is None or str(db_path) == ":memory:":
                raise ValueError("Sandbox needs a file path for db_path (not :memory:), or db_url")
            db_url = f"sqlite:///{Path(db_path)}"
        generator = SnowflakeID()
        if not generator.initialized:
            generator.init(worker_id, 0)
        _load_app(namespace, app_module, reload_app)
        backend = Backend.from_url(db_url)
        await backend.open()
        tbl_mgr = ComponentTableManager(namespace, instance_name, {"default": backend})
        await tbl_mgr.create_or_check_tables()
        return cls(namespace, instance_name, backend, tbl_mgr)

    # -- calling --------------------------------------------------------------------------

    def _context(self, caller: int, user_data: dict | None, admin: bool) -> SystemContext:
        ctx = SystemContext(
            caller=caller,
            connection_id=0,
            address="sandbox",
            group="admin" if admin else "",
            user_data=user_data if user_data is not None else {},
            timestamp=0.0,
            request=None,
            systems=None,
        )
        ctx.systems = SystemCaller(self.namespace, self.tbl_mgr, ctx)
        return ctx

    async def call(
        self, endpoint: str, *args: Any, caller: int = 0, user_data: dict | None = None, admin: bool = False
    ) -> Any:
        """Call an endpoint as a new client connection would; returns what it receives.

        ``caller`` logs the connection in first (``elevate``); ``admin=True`` makes it
        an admin connection. Raises :class:`CallRejected` on a guard rejection and
        :class:`ConnectionClosed` where the server would drop the connection.
        """
        ctx = self._context(0, user_data, admin)
        executor = EndpointExecutor(self.namespace, self.tbl_mgr, ctx)
        await executor.initialize("sandbox")
        try:
            if caller:
                ok, reason = await elevate(ctx, caller)
                if not ok:
                    raise RuntimeError(f"sandbox: elevate(caller={caller}) failed: {reason}")
            ok, result = await executor.execute(endpoint, *args)
        finally:
            await executor.terminate()
        if not ok:
            raise ConnectionClosed(
                f"the server would close the connection on {endpoint}{args}"
                + (f": {result}" if result else "")
            )
        if isinstance(result, RejectResponse):
            raise CallRejected(result.code, result.reason)
        return _wire_roundtrip(result.message if isinstance(result, ResponseToClient) else "ok")

    async def call_system(
        self,
        system: str,
        *args: Any,
        caller: int = 0,
        uuid: str = "",
        user_data: dict | None = None,
        raw: bool = False,
        admin: bool = False,
    ) -> Any:
        """Run a system directly (no permission or guard checks), in a real transaction.

        Returns what a client would receive, or with ``raw=True`` the return value as
        is. Errors raised by the system propagate.
        """
        ctx = self._context(caller, user_data, admin)
        result = await ctx.systems.call(system, *args, uuid=uuid)
        if raw or isinstance(result, RejectResponse):
            return result
        return _wire_roundtrip(result.message if isinstance(result, ResponseToClient) else "ok")

    # -- future calls -----------------------------------------------------------------------

    async def tick_future_calls(self) -> int:
        """Run every future call that is due now (as the worker's scheduler would);
        returns how many ran."""
        return await FutureCallRunner(self.namespace, [self.tbl_mgr]).tick()

    def start_future_calls(self) -> None:
        """Run the future-call scheduler in the background until :meth:`aclose`."""
        if self._scheduler is None:
            runner = FutureCallRunner(self.namespace, [self.tbl_mgr])
            self._scheduler = asyncio.create_task(runner.run_forever(jitter=False), name="hetu-sandbox-future-calls")

    # -- data helpers (no permission filtering) ------------------------------------------------

    def _table(self, comp: type[BaseComponent] | str):
        table = self.tbl_mgr.get_table(comp)
        if table is None:
            name = comp if isinstance(comp, str) else comp.name_
            raise ValueError(f"component {name!r} is not served by namespace {self.namespace!r}")
        return table

    async def get(self, comp: type[BaseComponent] | str, **query: Any) -> np.record | None:
        table = self._table(comp)
        async with table.session() as s:
            return await s.using(table.comp_cls).get(**query)

    async def must_get(self, comp: type[BaseComponent] | str, **query: Any) -> np.record:
        row = await self.get(comp, **query)
        if row is None:
            raise LookupError(f"no {comp if isinstance(comp, str) else comp.name_} row with {query}")
        return row

    async def range(
        self,
        comp: type[BaseComponent] | str,
        index_name: str | None = None,
        _left: Any = None,
        _right: Any = None,
        limit: int = 10,
        desc: bool = False,
        **kwargs: Any,
    ) -> np.recarray:
        table = self._table(comp)
        async with table.session() as s:
            return await s.using(table.comp_cls).range(index_name, _left, _right, limit, desc, **kwargs)

    async def insert(self, comp: type[BaseComponent] | str, **fields: Any) -> int:
        """Insert a row (defaults for the fields not given); returns its id."""
        table = self._table(comp)
        cls = table.comp_cls
        if "_version" in fields:
            raise ValueError("_version is managed by the engine; do not pass it")
        unknown = set(fields) - set(cls.dtypes.names)
        if unknown:
            raise ValueError(f"{cls.name_} has no field {', '.join(sorted(unknown))}")
        row = cls.new_row(id_=fields.pop("id", None))
        for name, value in fields.items():
            row[name] = value
        async with table.session() as s:
            await s.using(cls).insert(row)
        return int(row.id)

    @contextlib.asynccontextmanager
    async def upsert(self, comp: type[BaseComponent] | str, **anchor: Any):
        """``async with sb.upsert(Comp, name="x") as row:`` - written on exit."""
        table = self._table(comp)
        async with table.session() as s:
            async with s.using(table.comp_cls).upsert(**anchor) as row:
                yield row

    async def flush(self) -> None:
        """Delete every row of every table of this sandbox."""
        maint = self.backend.maintenance()
        root = logging.getLogger("HeTu.root")
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            for table in self.tbl_mgr.tables.values():
                await maint.flush(table.ref, force=True)
        finally:
            root.setLevel(level)

    async def aclose(self) -> None:
        if self._scheduler is not None:
            await cancel_and_wait(self._scheduler)
            self._scheduler = None
        await self.backend.close()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


def sandbox_fixture(namespace: str, app_module: ModuleType, *, scope: str = "function"):
    """A pytest fixture yielding a ready :class:`Sandbox` on a temporary database::

        sandbox = sandbox_fixture("Chat", app)

        async def test_chat(sandbox):
            await sandbox.call("user_login", 1, "Ann")
    """
    import pytest_asyncio

    @pytest_asyncio.fixture(scope=scope, loop_scope=scope)
    async def sandbox(tmp_path_factory):
        db_path = tmp_path_factory.mktemp("hetu_sandbox") / "sandbox.sqlite3"
        sb = await Sandbox.create(namespace, app_module, db_path=db_path)
        try:
            yield sb
        finally:
            await sb.aclose()

    return sandbox
