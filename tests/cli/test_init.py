"""`hetu init`: a scaffolded project that `hetu start` serves as it is, and never
overwrites what is already there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hetu.__main__ import _register, cli
from hetu.cli.init import PROJECT_FILES, namespace_of
from hetu.client import HeTuClient
from hetu.common.yamlloader import load_config
from tests.conftest import free_port

REPO = Path(__file__).parents[2]
AUTH_KEY = "init-test-key"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    _register()
    return CliRunner()


def init(runner: CliRunner, *args: str):
    return runner.invoke(cli, ["init", *args], catch_exceptions=False)


def project_files(namespace: str) -> list[str]:
    return [path.format(ns=namespace) for path in PROJECT_FILES] + [".gitignore"]


class ProjectServer:
    """``python -m hetu start --config=<project>/config.yml``, on a free port.

    The generated config reads LISTEN and the auth key from HETU_LISTEN and HETU_AUTH_KEY,
    so the project's files are served exactly as `hetu init` wrote them.
    """

    def __init__(self, project: Path) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/hetu/main"
        self.log_path = project / "server.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), HETU_LISTEN=f"127.0.0.1:{self.port}", HETU_AUTH_KEY=AUTH_KEY)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hetu", "start", "--config", str(project / "config.yml")],
                                         cwd=project.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "serving namespace" not in self.log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the project's server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)
        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5).read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_init_writes_a_project_named_after_its_directory(runner, tmp_path):
    result = init(runner, str(tmp_path / "my-game"))
    assert result.exit_code == 0
    for relative in project_files("my_game"):
        assert (tmp_path / "my-game" / relative).is_file(), relative
        assert f"created {relative}" in result.output
    pyproject = (tmp_path / "my-game" / "pyproject.toml").read_text()
    assert 'name = "my-game"' in pyproject and '"hetudb"' in pyproject and 'requires-python = ">=3.11"' in pyproject
    config = load_config(str(tmp_path / "my-game" / "config.yml"))
    assert config["NAMESPACE"] == "my_game" and config["APP_FILE"] == "src/app.py"
    assert config["BACKENDS"]["default"]["master"] == "sqlite:///./hetu.db"
    assert "hetu.db*" in (tmp_path / "my-game" / ".gitignore").read_text().splitlines()


def test_the_config_template_documents_the_same_keys_as_the_repository_template(runner, tmp_path):
    documented = REPO / "config.yml"  # the template `hetu start` users copy
    assert documented.is_file(), "the repository's config.yml template is missing"
    init(runner, str(tmp_path / "keys"))
    assert set(load_config(str(tmp_path / "keys" / "config.yml"))) == set(load_config(str(documented)))


def test_the_generated_python_compiles(runner, tmp_path):
    init(runner, str(tmp_path / "quest"))
    for path in (tmp_path / "quest" / "src").rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
        assert "__NAMESPACE__" not in path.read_text()


def test_init_defaults_to_the_current_directory(runner, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = init(runner)
    assert result.exit_code == 0
    assert (here / "src" / "here" / "system" / "login.py").is_file()


def test_init_again_keeps_every_existing_file(runner, tmp_path):
    project = tmp_path / "tower"
    init(runner, str(project))
    login = project / "src" / "tower" / "system" / "login.py"
    login.write_text("# mine\n")
    (project / ".gitignore").write_text("*.log\nhetu.db*\n")
    (project / "src" / "tower" / "component" / "player.py").unlink()
    result = init(runner, str(project))
    assert result.exit_code == 0
    assert login.read_text() == "# mine\n"
    assert "exists, skipped src/tower/system/login.py" in result.output
    assert "created src/tower/component/player.py" in result.output
    assert (project / ".gitignore").read_text() == "*.log\nhetu.db*\n__pycache__/\n"
    assert "updated .gitignore (added __pycache__/)" in result.output


@pytest.mark.parametrize(("name", "message"), [
    ("1st-game", "not a Python identifier"),
    ("my game", "not a Python identifier"),
    ("class", "keyword"),
    ("json", "would shadow the Python module"),
    ("hetu", "would shadow the Python module"),
])
def test_directory_names_that_cannot_be_a_namespace_are_refused(runner, tmp_path, name, message):
    result = runner.invoke(cli, ["init", str(tmp_path / name)])
    assert result.exit_code == 1
    assert message in result.output and repr(name) in result.output
    assert not (tmp_path / name).exists()


def test_dashes_become_underscores():
    assert namespace_of("my-space-game") == "my_space_game"


def test_help_describes_the_command(runner):
    result = runner.invoke(cli, ["init", "--help"])
    assert result.exit_code == 0 and "DIRECTORY" in result.output


async def _wait_offline(live, timeout: float = 10.0) -> dict:
    async def offline() -> dict:
        async for change in live:
            if change.row and change.row["online"] == 0:
                return change.row
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(offline(), timeout)


async def test_the_generated_project_serves_login_and_disconnect(runner, tmp_path):
    project = tmp_path / "first-game"
    init(runner, str(project))
    server = await asyncio.to_thread(ProjectServer, project)
    try:
        player = await HeTuClient.connect(server.url, auth_key=AUTH_KEY)
        watcher = await HeTuClient.connect(server.url, auth_key=AUTH_KEY)
        try:
            assert await player.call("login", 7, "ann") == "ok"
            mine = await player.range("Player", "owner", 7, 7)
            (row,) = mine.rows.values()
            assert (row["owner"], row["name"], row["online"]) == (7, "ann", 1)

            others = await watcher.range("Player", "owner", 7, 7)
            assert len(others.rows) == 1
            offline = asyncio.create_task(_wait_offline(others))
            await asyncio.sleep(0)  # listening before the push can come
            await player.close()
            row = await offline
            assert (row["owner"], row["name"]) == (7, "ann")
        finally:
            await player.close()
            await watcher.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert (project / "hetu.db").exists()  # the relative SQLite path, next to config.yml
    assert "Traceback" not in (project / "server.log").read_text()
