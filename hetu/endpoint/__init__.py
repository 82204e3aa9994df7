"""Endpoints: RPC entry points, their context, guards and responses."""

from .connection import elevate
from .context import Context
from .definer import define_endpoint
from .guard import ClientReject, guard, rate_limit
from .response import ResponseToClient

__all__ = ["ClientReject", "Context", "ResponseToClient", "define_endpoint", "elevate", "guard", "rate_limit"]
