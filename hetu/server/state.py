"""Per-worker server state: the app's backends, table managers and pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.backend import Backend
from ..endpoint.executor import EndpointExecutor
from ..manager import ComponentTableManager
from .broker import SubscriptionBroker
from .pipeline import MessagePipeline


@dataclass
class ServerState:
    """What one worker process serves: config, message pipeline, backends, table managers,
    the worker lease, its change-feed brokers and login watchers, and (when metrics are
    on) its meters."""
    config: dict
    namespace: str
    pipeline: MessagePipeline
    debug: int = 0
    idle_timeout: float = 120.0  # ENDPOINT_CALL_IDLE_TIMEOUT
    max_anonymous_by_ip: int = 0  # MAX_ANONYMOUS_CONNECTION_BY_IP (0: no limit)
    backends: dict[str, Backend] = field(default_factory=dict)
    table_managers: dict[str, ComponentTableManager] = field(default_factory=dict)
    worker_keeper: Any = None
    tasks: list = field(default_factory=list)
    brokers: dict = field(default_factory=dict)  # id(backend) -> SubscriptionBroker
    login_watchers: dict = field(default_factory=dict)  # instance -> login.LoginWatcher
    future_runner: Any = None  # the worker's FutureCallRunner, once started
    accepting: bool = False  # between Sanic's after_server_start and before_server_stop
    readiness: Any = None  # health.Readiness, made by the first /readyz
    # metrics (metrics/): None when off, so the hot path pays one `is None` check
    metrics: Any = None  # metrics.meters.WorkerMeters
    metrics_exporter: Any = None  # metrics.export.MetricsExporter, in the worker once started
    # what a connection executes its calls with (metrics: a metered executor)
    executor_class: Any = EndpointExecutor

    def broker(self, backend: Backend) -> SubscriptionBroker:
        """The worker's one :class:`SubscriptionBroker` (change feed) of ``backend``."""
        key = id(backend)
        if key not in self.brokers:
            self.brokers[key] = SubscriptionBroker(backend)
        return self.brokers[key]

    def limit(self, key: str, default: Any) -> Any:
        value = self.config.get(key)
        return default if value is None else value
