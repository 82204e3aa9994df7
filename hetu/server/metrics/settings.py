"""The ``METRICS*`` config keys.

::

    METRICS: true                  # off by default
    METRICS_LISTEN: 127.0.0.1:9466 # a listener of its own (default); "public": the game listener
    METRICS_PATH: /metrics
    METRICS_TOKEN: ${HETU_METRICS_TOKEN:-}   # required with "public"; optional otherwise
    METRICS_DIR: null              # default: a fresh directory per server, removed on exit
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:9466"
DEFAULT_PATH = "/metrics"
PUBLIC = "public"
PATH_FORM = re.compile(r"(/[A-Za-z0-9._~-]+)+")
# paths the game listener serves itself
RESERVED_PATHS = ("/", "/healthz", "/readyz")


class MetricsConfigError(ValueError):
    """The ``METRICS*`` keys cannot be served as given."""


@dataclass(frozen=True)
class MetricsSettings:
    """Where and how ``/metrics`` is served.

    ``host``/``port`` is the listener of its own, or None when the metrics are served on
    the public (game) listener at ``path``, where ``token`` is then required.
    """

    host: str | None
    port: int | None
    path: str
    token: str | None
    directory: str | None

    @property
    def public(self) -> bool:
        return self.port is None


def metrics_settings(config: dict) -> MetricsSettings | None:
    """The metrics settings of ``config``, or None when metrics are off.

    ``metrics_settings({"METRICS": True})`` serves ``/metrics`` on 127.0.0.1:9466.
    """
    if not _truthy(config.get("METRICS")):
        return None
    path = str(config.get("METRICS_PATH") or DEFAULT_PATH)
    if not PATH_FORM.fullmatch(path) or path.startswith("/hetu/") or path == "/hetu" or path in RESERVED_PATHS:
        raise MetricsConfigError(
            f"METRICS_PATH {path!r} is not a free URL path such as /metrics "
            "(letters, digits and . _ ~ - between slashes; not /, /healthz, /readyz or /hetu/...)")
    token = config.get("METRICS_TOKEN")
    token = str(token) if token not in (None, "") else None
    listen = str(config.get("METRICS_LISTEN") or DEFAULT_LISTEN).strip()
    directory = config.get("METRICS_DIR") or None
    if listen.lower() == PUBLIC:
        if token is None:
            raise MetricsConfigError(
                "METRICS_LISTEN: public serves the metrics on the game listener, to anyone who can "
                "reach it: set METRICS_TOKEN (e.g. ${HETU_METRICS_TOKEN}) or give the metrics a "
                "listener of their own (METRICS_LISTEN: 127.0.0.1:9466)")
        return MetricsSettings(None, None, path, token, directory)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsConfigError(
            f"METRICS_LISTEN {listen!r} is neither HOST:PORT (e.g. 127.0.0.1:9466) nor 'public'")
    return MetricsSettings(host, int(port), path, token, directory)


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
