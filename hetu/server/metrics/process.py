"""The main process's part: the metrics directory and the scrape listener around a server's life.

``prometheus_client`` keeps the values of each process in files of the directory named
by ``PROMETHEUS_MULTIPROC_DIR``, which must be set before it is first imported and must
start empty. :func:`serving_metrics` does that for ``hetu start``: it makes a fresh
directory (``hetu-metrics-<pid>-*`` under the temporary directory, or empties
``METRICS_DIR``), sets the variable for the workers it starts, opens the listener, and
removes it all when the server stops. Directories left by a killed server are removed by
the next one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator

from .settings import MetricsConfigError, metrics_settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "hetu-metrics-"


@contextlib.contextmanager
def serving_metrics(config: dict) -> Iterator[None]:
    """Around serving ``config``: its metrics directory and listener, when metrics are on."""
    settings = metrics_settings(config)
    if settings is None:
        yield
        return
    directory, owned = _prepare_directory(settings.directory)
    previous = os.environ.get(ENV)
    os.environ[ENV] = directory
    listener = None
    try:
        if not settings.public:
            from .scrape import MetricsListener

            try:
                listener = MetricsListener(settings, directory)
            except OSError as exc:
                raise MetricsConfigError(f"cannot serve the metrics on {settings.host}:{settings.port} "
                                         f"(METRICS_LISTEN): {exc}") from None
            listener.start()
        yield
    finally:
        if listener is not None:
            listener.close()
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            _empty(directory)


def metrics_directory() -> str | None:
    """The metrics directory of this server (set in its workers' environment), or None."""
    return os.environ.get(ENV)


def _prepare_directory(configured: str | None) -> tuple[str, bool]:
    """(an empty directory for the metric files, whether it is ours to remove)."""
    if configured:
        os.makedirs(configured, exist_ok=True)
        _empty(configured)
        return os.path.abspath(configured), False
    _remove_orphans()
    return tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"), True


def _empty(directory: str) -> None:
    for path in glob.glob(os.path.join(directory, "*.db")):
        with contextlib.suppress(OSError):
            os.remove(path)


def _remove_orphans() -> None:
    """Remove the directories of servers that were killed before they could."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*-*")):
        pid = os.path.basename(path)[len(DIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
