"""The Sanic application: health routes, websocket route, static files, metrics and the
worker lifecycle.

:func:`create_app` is the app factory every worker process runs: it loads the app
file, builds clusters and endpoints, and registers listeners that open the backends,
create/check the tables, lease a worker id and start the background tasks.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import logging.config
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sanic import Sanic, response
from sanic.exceptions import NotFound

import hetu

from ..common.tasks import cancel_and_wait
from ..data.backend import Backend, SchemaMismatch
from ..data.backend.worker_keeper import LEASE_SECONDS, WorkerKeeper, WorkerLease
from ..endpoint import connection as connection_module
from ..endpoint.definer import EndpointDefines
from ..manager import ComponentTableManager
from ..system.caller import SystemCaller
from ..system.definer import SystemClusters
from ..system.future import FutureCallRunner, internal_context
from .connection import ClientConnection
from .health import add_health_routes
from .metrics.settings import MetricsSettings, metrics_settings
from .pipeline import MessagePipeline
from .state import ServerState
from .watchdog import stop_watching, watch_workers

logger = logging.getLogger("HeTu.root")

APP_MODULE = "HeTuApp"
DEFAULT_MAX_SIZE = 2**20
DEFAULT_STATIC_URL = "/web"
STATIC_URL_FORM = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def load_app_file(path: str | Path) -> Any:
    """Import the app file as module ``HeTuApp`` (once per process)."""
    if APP_MODULE in sys.modules:
        return sys.modules[APP_MODULE]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"app file {path} does not exist (check --app-file / APP_FILE)")
    sys.path.insert(0, str(path.parent.resolve()))
    spec = importlib.util.spec_from_file_location(APP_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[APP_MODULE]
        raise
    return module


class StaticConfigError(ValueError):
    """``STATIC_DIR`` or ``STATIC_URL`` cannot be served."""


def static_settings(config: dict) -> tuple[Path, str] | None:
    """The directory (resolved) and URL prefix of ``STATIC_DIR`` and ``STATIC_URL``, or
    None when ``STATIC_DIR`` is not set. A relative ``STATIC_DIR`` is relative to the
    working directory here; ``hetu start`` makes it relative to the config file first.

    ``static_settings({"STATIC_DIR": "/srv/chat/web"})`` is ``(Path("/srv/chat/web"), "/web")``.
    """
    if not config.get("STATIC_DIR"):
        return None
    directory = Path(config["STATIC_DIR"])
    if not directory.is_dir():
        raise StaticConfigError(
            f"STATIC_DIR {directory.absolute()} is not a directory: create it, or remove STATIC_DIR "
            "(--static-dir) to serve no files")
    prefix = "/" + str(config.get("STATIC_URL") or DEFAULT_STATIC_URL).strip("/")
    if not STATIC_URL_FORM.fullmatch(prefix):
        raise StaticConfigError(
            f"STATIC_URL {prefix!r} is not a URL path prefix such as /web "
            "(letters, digits and . _ ~ - between slashes; not / itself)")
    if prefix == "/hetu" or prefix.startswith("/hetu/"):
        raise StaticConfigError(
            f"STATIC_URL {prefix!r} overlaps the websocket route /hetu/<instance>: choose another, such as /web")
    return directory.resolve(), prefix


def find_static_file(directory: Path, relative: str) -> Path | None:
    """What the decoded URL path ``relative`` names under ``directory`` (resolved), or
    None when nothing does or it would lie outside it: ``..`` and hidden names
    (``.git``, ``.env``) are refused, and so are symbolic links leading out.

    ``find_static_file(Path("/srv/web"), "css/site.css")`` is ``Path("/srv/web/css/site.css")``
    when that file exists; ``find_static_file(Path("/srv/web"), "../secret")`` is None.
    """
    parts = [part for part in relative.split("/") if part]
    if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    target = directory.joinpath(*parts).resolve()
    if not target.is_relative_to(directory) or not target.exists():
        return None
    return target


def add_static_routes(app: Sanic, directory: Path, prefix: str) -> None:
    """Serve the files under ``directory`` at ``prefix/...``; a directory's URL serves
    its ``index.html``. Anything else is a 404."""

    async def static_file(request, path: str = ""):
        found = find_static_file(directory, unquote(path))
        if found is not None and found.is_dir():
            if not request.path.endswith("/"):
                # the page's relative links resolve against the URL ending in "/"
                query = f"?{request.query_string}" if request.query_string else ""
                return response.redirect(f"{request.path}/{query}", status=308)
            found = found / "index.html"
        if found is None or not found.is_file():
            raise NotFound(f"{request.path} not found")
        return await response.file(found, request_headers=request.headers)

    for uri, name in ((prefix, "static_prefix"), (f"{prefix}/", "static_index"),
                      (f"{prefix}/<path:path>", "static")):
        app.add_route(static_file, uri, methods=["GET", "HEAD"], name=name, strict_slashes=True)


def configure_logging(config: dict) -> None:
    """``LOGGING`` (a logging.dictConfig) when given, else plain lines on stderr.

    Runs in every worker process (workers do not inherit the main process's setup).
    """
    if config.get("LOGGING"):
        logging.config.dictConfig(config["LOGGING"])
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # a line per connection and per call is for debugging (DEBUG turns it on)
        logging.getLogger("HeTu.replay").setLevel(logging.WARNING)


def create_app(config: dict) -> Sanic:
    """Build the server for ``config`` (upper-case keys, as in config.yml)."""
    configure_logging(config)
    static = static_settings(config)
    if config.get("APP_FILE"):
        load_app_file(config["APP_FILE"])
    namespace = config["NAMESPACE"]
    clusters = SystemClusters()
    if not clusters.is_built(namespace):
        clusters.build_clusters(namespace)
        clusters.build_endpoints()
    connection_module.MAX_ANONYMOUS_CONNECTION_BY_IP = int(config.get("MAX_ANONYMOUS_CONNECTION_BY_IP") or 0)
    connection_module.ENDPOINT_CALL_IDLE_TIMEOUT = float(config.get("ENDPOINT_CALL_IDLE_TIMEOUT") or 120)

    app = Sanic("HeTu", configure_logging=False)
    app.config.update({k: v for k, v in config.items() if k.isupper() and k != "LOGGING"})
    app.config.WEBSOCKET_MAX_SIZE = int(config.get("WEBSOCKET_MAX_SIZE") or DEFAULT_MAX_SIZE)
    for key in ("WEBSOCKET_PING_INTERVAL", "WEBSOCKET_PING_TIMEOUT"):
        if config.get(key) is not None:
            app.config[key] = config[key]
    debug = int(config.get("DEBUG") or 0)
    if debug:
        logging.getLogger("HeTu").setLevel(logging.DEBUG)
        if not config.get("LOGGING"):
            logging.getLogger("HeTu.replay").setLevel(logging.NOTSET)  # follow HeTu
    app.ctx.hetu = ServerState(
        config=config,
        namespace=namespace,
        pipeline=MessagePipeline.from_config(config.get("PACKET_LAYERS")),
        debug=debug,
    )

    async def health(request):
        return response.text(f"Powered by HeTu(v{hetu.__version__}) Database! ")

    async def websocket(request, ws, instance: str):
        state: ServerState = request.app.ctx.hetu
        meters = state.metrics
        if meters is None:
            await ClientConnection(state, ws, request, instance).serve()
            return
        meters.connections += 1
        try:
            await ClientConnection(state, ws, request, instance).serve()
        finally:
            meters.connections -= 1

    app.add_route(health, "/", name="health")
    add_health_routes(app)
    app.add_websocket_route(websocket, "/hetu/<instance>", name="hetu")
    if static is not None:
        add_static_routes(app, *static)
    metrics = metrics_settings(config)
    if metrics is not None:
        enable_metrics(app, metrics)
    app.register_listener(worker_start, "before_server_start")
    app.register_listener(worker_ready, "after_server_start")
    app.register_listener(worker_stopping, "before_server_stop")
    app.register_listener(worker_stop, "after_server_stop")
    app.register_listener(watch_workers, "main_process_ready")
    app.register_listener(stop_watching, "main_process_stop")
    return app


def enable_metrics(app: Sanic, settings: MetricsSettings) -> None:
    """Count in this worker (metered executor and pipeline, see :mod:`.metrics`) and,
    with ``METRICS_LISTEN: public``, serve the scrape path on the game listener."""
    from .metrics.hooks import MeteredExecutor, MeteredPipeline
    from .metrics.meters import WorkerMeters
    from .metrics.process import metrics_directory

    if metrics_directory() is None:
        raise RuntimeError("METRICS needs the metrics directory `hetu start` sets up "
                           "(PROMETHEUS_MULTIPROC_DIR): start the server with `hetu start`")
    state: ServerState = app.ctx.hetu
    meters = state.metrics = WorkerMeters(EndpointDefines().get_endpoints(state.namespace))
    state.pipeline = MeteredPipeline(state.pipeline, meters)
    state.executor_class = functools.partial(MeteredExecutor, meters=meters)
    if settings.public:
        from .metrics.scrape import add_public_route

        add_public_route(app, settings, metrics_directory)


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
