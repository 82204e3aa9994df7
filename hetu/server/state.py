"""Per-worker server state: the app's backends, table managers and pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.backend import Backend
from ..manager import ComponentTableManager
from .broker import SubscriptionBroker
from .pipeline import MessagePipeline


@dataclass
class ServerState:
    """What one worker process serves: config, message pipeline, backends, table managers,
    the worker lease, its change-feed brokers and login watchers."""
    config: dict
    namespace: str
    pipeline: MessagePipeline
    debug: int = 0
    backends: dict[str, Backend] = field(default_factory=dict)
    table_managers: dict[str, ComponentTableManager] = field(default_factory=dict)
    worker_keeper: Any = None
    tasks: list = field(default_factory=list)
    brokers: dict = field(default_factory=dict)  # id(backend) -> SubscriptionBroker
    login_watchers: dict = field(default_factory=dict)  # instance -> LoginWatcher

    def broker(self, backend: Backend) -> SubscriptionBroker:
        """The worker's one :class:`SubscriptionBroker` (change feed) of ``backend``."""
        key = id(backend)
        if key not in self.brokers:
            self.brokers[key] = SubscriptionBroker(backend)
        return self.brokers[key]

    def limit(self, key: str, default: Any) -> Any:
        value = self.config.get(key)
        return default if value is None else value
