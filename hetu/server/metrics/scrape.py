"""Answering scrapes: the Prometheus text of every worker's files, behind an optional token.

Two places serve it: :class:`MetricsListener`, a small HTTP server thread in the main
process on ``METRICS_LISTEN`` (the default, off the public listener), and
:func:`add_public_route`, the path on the game listener (``METRICS_LISTEN: public``,
only with a token). A token is sent as ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials: ...}`` in the scrape config); without one the answer is
401, with a wrong one 403.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from .settings import MetricsSettings

if TYPE_CHECKING:
    from sanic import Sanic

logger = logging.getLogger("HeTu.root")


def render(directory: str) -> bytes:
    """The Prometheus text exposition of the metric files in ``directory`` (all workers)."""
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def token_status(authorization: str | None, token: str | None) -> int:
    """200 when the request may read the metrics, 401 without credentials, 403 with wrong ones."""
    if token is None:
        return 200
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return 401
    return 200 if hmac.compare_digest(credentials.strip().encode(), token.encode()) else 403


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        settings = self.server.settings
        if urlsplit(self.path).path != settings.path:
            self._reply(404, b"not found\n", "text/plain")
            return
        status = token_status(self.headers.get("Authorization"), settings.token)
        if status != 200:
            self._reply(status, b"unauthorized\n" if status == 401 else b"forbidden\n", "text/plain")
            return
        self._reply(200, render(self.server.directory), CONTENT_TYPE_LATEST)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="hetu metrics"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        pass  # scrapes come every few seconds: not worth a log line each


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: MetricsSettings, directory: str) -> None:
        self.settings, self.directory = settings, directory
        self.address_family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        super().__init__((settings.host, settings.port), _Handler)


class MetricsListener:
    """``METRICS_LISTEN``'s HTTP server, in a thread of the process that starts it."""

    def __init__(self, settings: MetricsSettings, directory: str) -> None:
        self._server = _MetricsServer(settings, directory)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hetu-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def add_public_route(app: Sanic, settings: MetricsSettings, directory_of) -> None:
    """Serve the metrics at ``settings.path`` on the game listener (``settings.token`` required)."""
    from sanic import response

    async def metrics(request):
        status = token_status(request.headers.get("authorization"), settings.token)
        if status == 401:
            return response.text("unauthorized\n", status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="hetu metrics"'})
        if status != 200:
            return response.text("forbidden\n", status=403)
        exporter = request.app.ctx.hetu.metrics_exporter
        if exporter is not None:
            exporter.flush()  # this worker's figures are current; the others' at most a second old
        body = await asyncio.to_thread(render, directory_of())
        return response.raw(body, content_type=CONTENT_TYPE_LATEST)

    app.add_route(metrics, settings.path, methods=["GET"], name="metrics")
