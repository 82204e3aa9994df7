"""Real server processes (`hetu start`) for the gateway tests."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

APP = Path(__file__).parent / "server_app.py"
CHAT_APP = Path(__file__).parents[2] / "examples" / "chat" / "server" / "src" / "app.py"
AUTH_KEY = "password123"


async def connect(srv, auth_key: str | None = AUTH_KEY):
    """A client connected to a test server (``srv.url``) with the test auth key."""
    from hetu.client import HeTuClient

    return await HeTuClient.connect(srv.url, auth_key=auth_key)


class ServerProcess:
    def __init__(self, tmp: Path, db: str, debug: bool = False, workers: int = 1,
                 app: Path = APP, namespace: str = "pytest_srv", port: int | None = None,
                 ready_scheme: str = "http", **config) -> None:
        self.ready_scheme = ready_scheme
        self.port = port or free_port()
        self.url = f"ws://127.0.0.1:{self.port}/hetu/test"
        cfg = {
            "APP_FILE": str(app), "NAMESPACE": namespace, "INSTANCES": ["test"],
            "DEBUG": 1 if debug else 0, "LISTEN": f"127.0.0.1:{self.port}", "WORKER_NUM": workers,
            "BACKENDS": {"default": {"master": db}},
            "PACKET_LAYERS": [{"type": "jsonb"}, {"type": "zlib", "level": 1},
                              {"type": "crypto", "auth_key": AUTH_KEY}],
        }
        cfg.update(config)
        self.config_path = tmp / f"config-{self.port}.yml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.log_path = tmp / f"server-{self.port}.log"
        self.log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hetu", "start", f"--config={self.config_path}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self._wait_ready(workers)

    def _wait_ready(self, workers: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                context = ssl._create_unverified_context() if self.ready_scheme == "https" else None
                urllib.request.urlopen(f"{self.ready_scheme}://127.0.0.1:{self.port}/", timeout=1,
                                       context=context).read()
                if self.log_path.read_text().count("accepting connections") >= workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        stop_group(self.proc)
        self.log.close()

    def kill(self) -> None:
        """Like a crash: SIGKILL to the server and its workers."""
        stop_group(self.proc)


def chat_server_process(tmp: Path, debug: bool = False, **config) -> ServerProcess:
    """The tutorial's chat example (namespace Chat) on a SQLite file in ``tmp``."""
    return ServerProcess(tmp, f"sqlite:///{tmp / 'chat.db'}", debug=debug, app=CHAT_APP, namespace="Chat",
                         **config)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a server started with start_new_session=True (its
    workers too, so none outlives a test holding the port)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("srv")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'srv.db'}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("srvdbg")
    srv = ServerProcess(tmp, f"sqlite:///{tmp / 'srv.db'}", debug=True, MAX_ROW_SUBSCRIPTION=2)
    yield srv
    srv.stop()
