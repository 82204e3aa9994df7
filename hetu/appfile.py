"""Loading a game's app file, and the logging of a process: what the server's workers
and the CLI commands (``build``, ``upgrade``) share, without importing the server."""

from __future__ import annotations

import importlib.util
import logging
import logging.config
import sys
from pathlib import Path
from typing import Any

APP_MODULE = "HeTuApp"


def load_app_file(path: str | Path) -> Any:
    """Import the app file as module ``HeTuApp`` (once per process)."""
    if APP_MODULE in sys.modules:
        return sys.modules[APP_MODULE]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"app file {path} does not exist (check --app-file / APP_FILE)")
    sys.path.insert(0, str(path.parent.resolve()))
    spec = importlib.util.spec_from_file_location(APP_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[APP_MODULE]
        raise
    return module


def configure_logging(config: dict) -> None:
    """``LOGGING`` (a logging.dictConfig) when given, else plain lines on stderr.

    Runs in every worker process (workers do not inherit the main process's setup).
    """
    if config.get("LOGGING"):
        logging.config.dictConfig(config["LOGGING"])
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # a line per connection and per call is for debugging (DEBUG turns it on)
        logging.getLogger("HeTu.replay").setLevel(logging.WARNING)
