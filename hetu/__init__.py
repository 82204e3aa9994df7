"""HeTu: a game-server engine of typed components and transactional systems.

Declare components (typed tables) and systems (transactions) in an ``app.py``;
``hetu start`` serves them to game clients over a websocket.
"""

from importlib.metadata import PackageNotFoundError, version

from . import common, data, endpoint, system
from .common.permission import Permission
from .data.backend import worker_keeper as _worker_keeper  # noqa: F401 - defines the built-in WorkerLease table
from .data.backend.errors import RaceCondition, UniqueViolation
from .data.component import BaseComponent, define_component, property_field
from .endpoint import ClientReject, ResponseToClient, define_endpoint, elevate, guard, logout, rate_limit
from .endpoint.context import Context as EndpointContext
from .system import SystemContext, define_system

try:
    __version__ = version("hetudb")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BaseComponent",
    "ClientReject",
    "EndpointContext",
    "Permission",
    "RaceCondition",
    "ResponseToClient",
    "SystemContext",
    "UniqueViolation",
    "common",
    "data",
    "define_component",
    "define_endpoint",
    "define_system",
    "elevate",
    "endpoint",
    "guard",
    "logout",
    "property_field",
    "rate_limit",
    "system",
]
