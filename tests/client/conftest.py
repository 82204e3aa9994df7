"""Server processes for the client tests: the gateway tests' app and fixtures."""

from __future__ import annotations

from hetu.client import HeTuClient
from tests.server.conftest import AUTH_KEY, server  # noqa: F401 - the module-scoped server fixture


async def connect(srv) -> HeTuClient:
    return await HeTuClient.connect(srv.url, auth_key=AUTH_KEY)
