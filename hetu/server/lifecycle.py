"""A worker's life: the Sanic listeners that open the backends, create or check the
tables, lease a worker id, run the startup systems and background tasks, and undo all
of it when the worker stops."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sanic import Sanic

from ..common.tasks import cancel_and_wait
from ..data.backend import Backend, SchemaMismatch
from ..data.backend.worker_keeper import LEASE_SECONDS, WorkerKeeper, WorkerLease
from ..manager import ComponentTableManager
from ..system.caller import SystemCaller
from ..system.definer import SystemClusters
from ..system.future import FutureCallRunner, internal_context
from .state import ServerState

logger = logging.getLogger("HeTu.root")


async def start_backends(state: ServerState) -> None:
    """Open every configured backend and create or check the tables of every instance."""
    backends_cfg = state.config.get("BACKENDS") or {}
    if not backends_cfg:
        raise ValueError("no BACKENDS configured")
    for name, cfg in backends_cfg.items():
        backend = Backend.from_config(cfg)
        if state.metrics is not None:
            from .metrics.hooks import meter_backend

            meter_backend(state.metrics, name, backend)
        await backend.open()
        state.backends[name] = backend
        state.backends.setdefault("default", backend)
    for instance in state.config.get("INSTANCES") or []:
        tbl_mgr = ComponentTableManager(state.namespace, instance, state.backends)
        await tbl_mgr.create_or_check_tables()
        state.table_managers[instance] = tbl_mgr


async def lease_worker_id(state: ServerState) -> None:
    """Lease this worker's snowflake worker id (waiting while all are leased) and keep
    renewing it in the background."""
    first = next(iter(state.table_managers.values()))
    table = first.get_table(WorkerLease)
    lease = float(state.config.get("WORKER_LEASE_SECONDS") or LEASE_SECONDS)
    keeper = WorkerKeeper(table.backend, table.ref.instance_name, table.ref.cluster_id, lease_seconds=lease)
    while True:
        try:
            await keeper.acquire()
            break
        except RuntimeError as exc:  # every id leased: wait for one to expire
            logger.error("%s; retrying in 1s", exc)
            await asyncio.sleep(1)
    keeper.start()
    state.worker_keeper = keeper


async def run_startup_systems(state: ServerState) -> None:
    """Run the ``on_start`` systems on every instance, once per boot (one call-lock uuid)."""
    names = SystemClusters().get_startup_systems()
    boot_uuid = str(state.config.get("ON_START_UUID") or uuid.uuid4().hex[:16])
    for tbl_mgr in state.table_managers.values():
        ctx = internal_context()
        ctx.systems = SystemCaller(state.namespace, tbl_mgr, ctx)
        for name in names:
            logger.info("running startup system %s on %s", name, tbl_mgr.instance)
            await ctx.systems.call(name, uuid=boot_uuid)


async def worker_start(app: Sanic) -> None:
    """Sanic ``before_server_start``: backends, worker lease, startup systems, the
    future-call runner; a failure stops the server."""
    state: ServerState = app.ctx.hetu
    try:
        await start_backends(state)
        await lease_worker_id(state)
        await run_startup_systems(state)
    except SchemaMismatch as exc:
        logger.error("%s", exc)
        app.stop()
        raise
    except Exception:
        logger.exception("worker failed to start")
        app.stop()
        raise
    runner = state.future_runner = FutureCallRunner(state.namespace, list(state.table_managers.values()))
    state.tasks.append(asyncio.create_task(runner.run_forever(), name="hetu-future-calls"))
    if state.metrics is not None:
        from .metrics.export import MetricsExporter

        exporter = state.metrics_exporter = MetricsExporter(state)
        state.tasks.append(asyncio.create_task(exporter.run_forever(), name="hetu-metrics"))
    logger.info(
        "serving namespace %s, instances %s", state.namespace, ", ".join(state.table_managers)
    )


async def worker_ready(app: Sanic) -> None:
    """Sanic ``after_server_start``: log that this worker accepts connections."""
    state: ServerState = app.ctx.hetu
    worker_id = state.worker_keeper.worker_id if state.worker_keeper else None
    state.accepting = True
    logger.info("worker id %s accepting connections", worker_id)


async def worker_stopping(app: Sanic) -> None:
    """Sanic ``before_server_stop``: /readyz says not ready from now on."""
    app.ctx.hetu.accepting = False


async def worker_stop(app: Sanic) -> None:
    """Sanic ``after_server_stop``: stop background tasks and brokers, release the
    worker lease and close the backends."""
    state: ServerState = app.ctx.hetu
    await asyncio.gather(*(cancel_and_wait(task) for task in state.tasks))
    for broker in state.brokers.values():
        await broker.close()
    if state.worker_keeper is not None:
        try:
            await state.worker_keeper.release()
        except Exception:
            logger.exception("releasing the worker id failed")
    closed = set()
    for backend in state.backends.values():
        if id(backend) not in closed:
            closed.add(id(backend))
            await backend.close()
    if state.metrics_exporter is not None:
        state.metrics_exporter.close()
