"""Server processes for the client tests (the gateway tests' app)."""

from __future__ import annotations

import pytest

from hetu.client import HeTuClient
from tests.server.conftest import AUTH_KEY, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-srv")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'srv.db'}")
    yield srv
    srv.stop()


async def connect(srv) -> HeTuClient:
    return await HeTuClient.connect(srv.url, auth_key=AUTH_KEY)
