"""``hetu start``: serve an app, from flags or from a config file."""

from __future__ import annotations

import functools
import os
import uuid

import click

from .options import DEFAULT_PORT, app_config, app_options


def serve(config: dict) -> None:
    """Serve ``config`` until stopped (one process for one worker, else a manager and its
    workers), with its metrics directory and listener when ``METRICS`` is on
    (hetu/server/metrics/process.py)."""
    from ..server.metrics.process import serving_metrics

    with serving_metrics(config):
        _serve(config)


def _serve(config: dict) -> None:
    """Run Sanic with ``config`` until stopped."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from ..server.web import create_app
    from ..server.ws_reader import HetuWebSocketProtocol

    config.setdefault("ON_START_UUID", uuid.uuid4().hex[:16])
    host, _, port = str(config.get("LISTEN") or "0.0.0.0:2466").rpartition(":")
    workers = int(config.get("WORKER_NUM") or 1)
    cert = config.get("CERT_CHAIN")
    if isinstance(cert, list):
        cert = [c for c in cert if c] or None  # the template's list may start with null
    loader = AppLoader(factory=functools.partial(create_app, config))
    app = loader.load()
    app.prepare(
        host=host or "0.0.0.0",
        port=int(port),
        workers=max(workers, 1),
        single_process=workers <= 1,
        debug=int(config.get("DEBUG") or 0) > 1,
        access_log=bool(config.get("ACCESS_LOG")),
        motd=False,
        ssl=None if cert == "auto" else cert,
        auto_tls=cert == "auto",
        protocol=HetuWebSocketProtocol,  # reads client frames itself (see ws_reader.py)
    )
    if workers <= 1:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)


@click.command("start", short_help="Serve an app over websocket.")
@app_options("Config file (config.yml); every other option is ignored when given.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on (all interfaces).")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--debug", is_flag=True, help="Debug mode: failed calls get an `err` frame instead of a disconnect.")
@click.option("--authkey", default="", help="Auth key clients must sign their hello with (empty: any client).")
@click.option("--cert", default=None, help="TLS certificate directory, or 'auto' for a self-signed one.")
@click.option("--static-dir", default=None,
              help="A directory of files to serve at /web/ (index.html for the directory), e.g. a web client.")
@click.option("--metrics", is_flag=True,
              help="Serve Prometheus metrics at /metrics on 127.0.0.1:9466 (see docs/operations.md).")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT|public",
              help="Where --metrics serves: a listener of its own (default 127.0.0.1:9466), or 'public': "
                   "the game port, which needs --metrics-token.")
@click.option("--metrics-token", default=None, envvar="HETU_METRICS_TOKEN", show_envvar=True,
              help="Bearer token a scrape must send (prefer the environment variable to the flag).")
def start(config_path, app_file, namespace, instance, db, port, workers, debug, authkey, cert, static_dir,
          metrics, metrics_listen, metrics_token) -> None:
    """Serve an app over websocket: `hetu start --app-file=./src/app.py --namespace=Chat
    --instance=dev --db=sqlite:///./chat.db`, or `hetu start --config=./config.yml`."""
    config = app_config(config_path, app_file, namespace, instance, db, port=port, workers=workers, debug=debug,
                        authkey=authkey, cert=cert, static_dir=static_dir)
    if not config_path and (metrics or metrics_listen):
        config.update(METRICS=True, METRICS_LISTEN=metrics_listen, METRICS_TOKEN=metrics_token)
    from ..server.metrics.settings import MetricsConfigError, metrics_settings
    from ..server.static import StaticConfigError, static_settings

    try:  # before any worker starts: each would fail the same way
        static_settings(config)
        metrics_settings(config)
    except (StaticConfigError, MetricsConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    app_file = config.get("APP_FILE")
    if app_file and not os.path.isfile(app_file):
        raise click.ClickException(f"the app file {app_file} does not exist (check --app-file / APP_FILE)")
    try:
        serve(config)
    except MetricsConfigError as exc:  # the metrics port is taken
        raise click.ClickException(str(exc)) from None
