"""Two server processes of two workers each, sharing one Redis, serving server_app.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from hetu.client import HeTuClient
from tests.conftest import redis_server
from tests.server.conftest import AUTH_KEY, ServerProcess

APP = Path(__file__).parent / "server_app.py"
NAMESPACE = "pytest_rel"


@dataclass
class Cluster:
    """The servers of one test module; ``connect(i)`` alternates between them."""

    servers: list[ServerProcess]

    async def connect(self, i: int = 0) -> HeTuClient:
        return await HeTuClient.connect(self.servers[i % len(self.servers)].url, auth_key=AUTH_KEY)


def start_cluster(tmp: Path, debug: bool) -> Cluster:
    url = redis_server("redis").url()
    redis.Redis.from_url(url).flushdb()
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):
            servers.append(ServerProcess(tmp, url, debug=debug, workers=2, app=APP, namespace=NAMESPACE))
    except Exception:
        for srv in servers:
            srv.stop()
        raise
    return Cluster(servers)


def serve_cluster(tmp_path_factory, name: str, debug: bool):
    """Fixture body: a cluster for the module, stopped afterwards."""
    found = start_cluster(tmp_path_factory.mktemp(name), debug=debug)
    yield found
    for srv in found.servers:
        srv.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Debug mode: failed and forbidden calls answer an `err` frame instead of closing."""
    yield from serve_cluster(tmp_path_factory, "rel", debug=True)


@pytest.fixture(scope="module")
def release_cluster(tmp_path_factory):
    """Release mode: a forbidden call or subscription closes the connection."""
    yield from serve_cluster(tmp_path_factory, "rel_release", debug=False)
