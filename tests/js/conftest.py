"""The JavaScript SDK (clients/js): its npm tooling, its built bundle, real servers, and
Node scripts that print JSON lines for the tests to assert on."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server.conftest import CHAT_APP, ServerProcess, chat_server_process  # noqa: F401 - CHAT_APP for the tests

ROOT = Path(__file__).parents[2]
SDK = ROOT / "clients" / "js"
SCRIPTS = Path(__file__).parent


def npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run npm in clients/js; the output is kept for the failure message."""
    return subprocess.run(["npm", *args], cwd=SDK, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, CI="true", NO_COLOR="1"))


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """clients/js with its dependencies installed (``npm ci`` once, when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    if not (SDK / "node_modules").is_dir():
        check(npm("ci", "--no-audit", "--no-fund"))
    return SDK / "node_modules"


@pytest.fixture(scope="session")
def bundle(node_modules) -> Path:
    """dist/hetu-client.js, built once per session from the current sources."""
    check(npm("run", "build", timeout=120))
    return SDK / "dist" / "hetu-client.js"


def bigint(value: int) -> str:
    """How the scripts print a bigint (JSON has none)."""
    return f"{value}n"


def as_int(value: int | str) -> int:
    """An integer printed by a script, number or bigint."""
    return int(value[:-1]) if isinstance(value, str) and value.endswith("n") else int(value)


class NodeScript:
    """A Node script of this folder, run with arguments; it prints one JSON object per line
    (``{"event": name, ...}``) and ends with a ``result`` event."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.events: list[dict] = []

    @classmethod
    async def start(cls, name: str, *args: object) -> NodeScript:
        proc = await asyncio.create_subprocess_exec(
            "node", str(SCRIPTS / name), *map(str, args),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, name)

    async def event(self, name: str, timeout: float = 15) -> dict:
        """The next event called ``name`` (earlier ones are kept in ``events``)."""
        async def read() -> dict:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    await self.proc.wait()
                    stderr = (await self.proc.stderr.read()).decode()
                    raise AssertionError(f"{self.name} ended (exit {self.proc.returncode}) before "
                                         f"{name!r}; events {self.events}\n{stderr}")
                event = json.loads(line)
                self.events.append(event)
                if event.get("event") == "error":
                    raise AssertionError(f"{self.name} failed: {event['error']}")
                if event.get("event") == name:
                    return event

        try:
            return await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no {name!r} event in {timeout}s; events {self.events}") from None

    async def result(self, timeout: float = 20) -> dict:
        result = await self.event("result", timeout)
        await asyncio.wait_for(self.proc.wait(), 10)
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def scripts():
    """Start Node scripts; any still running at the end is killed."""
    started: list[NodeScript] = []

    async def start(name: str, *args: object) -> NodeScript:
        script = await NodeScript.start(name, *args)
        started.append(script)
        return script

    yield start
    for script in started:
        script.kill()
        await script.proc.wait()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("js-srv") / "shared.db"


@pytest.fixture(scope="module")
def server(db_path):
    """The gateway tests' app in release mode."""
    srv = ServerProcess(db_path.parent, f"sqlite:///{db_path}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    """The chat example in debug mode (failed calls answer ``err`` instead of closing)."""
    tmp = tmp_path_factory.mktemp("js-chat")
    srv = chat_server_process(tmp, debug=True)
    yield srv
    srv.stop()
