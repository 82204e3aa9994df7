"""The Sanic application: health routes, the websocket route, static files and metrics.

:func:`create_app` is the app factory every worker process runs: it loads the app
file, builds clusters and endpoints, and registers the listeners of
:mod:`.lifecycle` that open the backends, create/check the tables, lease a worker id
and start the background tasks. Static files: :mod:`.static`; the app file and
logging: :mod:`hetu.appfile`.
"""

from __future__ import annotations

import functools
import logging

from sanic import Sanic, response

import hetu

from ..appfile import configure_logging, load_app_file
from ..endpoint.definer import EndpointDefines
from ..system.definer import SystemClusters
from .client_connection import ClientConnection
from .health import add_health_routes
from .lifecycle import worker_ready, worker_start, worker_stop, worker_stopping
from .metrics.settings import MetricsSettings, metrics_settings
from .pipeline import MessagePipeline
from .state import ServerState
from .static import add_static_routes, static_settings
from .watchdog import stop_watching, watch_workers

DEFAULT_MAX_SIZE = 2**20


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
        idle_timeout=float(config.get("ENDPOINT_CALL_IDLE_TIMEOUT") or 120),
        max_anonymous_by_ip=int(config.get("MAX_ANONYMOUS_CONNECTION_BY_IP") or 0),
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
