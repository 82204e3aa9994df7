"""Server processes for the client tests: the gateway tests' app and fixtures."""

from __future__ import annotations

from tests.server.conftest import AUTH_KEY, connect, server  # noqa: F401 - re-exported for the client tests
