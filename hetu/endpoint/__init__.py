"""Endpoints: RPC entry points, their context, guards and responses."""

from .connection import elevate, logout
from .context import Context
from .definer import define_endpoint
from .guard import ClientReject, guard, rate_limit
from .response import ResponseToClient

__all__ = ["ClientReject", "Context", "ResponseToClient", "define_endpoint", "elevate", "guard", "logout", "rate_limit"]
