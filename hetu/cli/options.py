"""What ``hetu start`` and ``hetu upgrade`` share: the options naming an app and its
database, and the configuration built from them (a config file, or the flags)."""

from __future__ import annotations

import os
from collections.abc import Callable

import click

from ..data.backend import backend_type_of_url

DEFAULT_APP_FILE = "./app.py"
DEFAULT_DB = "sqlite:///./hetu.db"
DEFAULT_PORT = 2466


def config_option(help_text: str) -> Callable:
    """``--config FILE`` (an existing file, passed as ``config_path``), with ``help_text``."""
    return click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help=help_text)


def app_options(config_help: str) -> Callable:
    """Decorate a command with ``--config``, ``--app-file``, ``--namespace``, ``--instance``
    and ``--db``, in that order; ``config_help`` says what ``--config`` overrides."""
    options = [
        config_option(config_help),
        click.option("--app-file", default=DEFAULT_APP_FILE, show_default=True, help="The app's Python file."),
        click.option("--namespace", help="The app namespace (required without --config)."),
        click.option("--instance",
                     help="The instance name; clients connect to /hetu/<instance> (required without --config)."),
        click.option("--db", default=DEFAULT_DB, show_default=True,
                     help="Database URL: sqlite:///path.db, redis://host:port/db, redis+cluster://host:port "
                          "or postgresql://user@host/db."),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):  # click lists the option applied last first
            command = option(command)
        return command

    return decorate


def config_from_flags(app_file: str, namespace: str, instance: str, db: str, *, port: int = DEFAULT_PORT,
                      workers: int = 1, debug: bool = False, authkey: str = "", cert: str | None = None,
                      static_dir: str | None = None) -> dict:
    """The configuration (``config.yml`` keys) that the command-line flags describe."""
    config = {
        "APP_FILE": app_file,
        "NAMESPACE": namespace,
        "INSTANCES": [instance],
        "DEBUG": 1 if debug else 0,
        "LISTEN": f"0.0.0.0:{port}",
        "WORKER_NUM": workers,
        "BACKENDS": {"default": {"type": backend_type_of_url(db), "master": db}},
        "PACKET_LAYERS": [
            {"type": "jsonb"},
            {"type": "zlib", "level": 1},
            {"type": "crypto", "auth_key": authkey or None},
        ],
    }
    if cert:
        config["CERT_CHAIN"] = cert
    if static_dir:
        config["STATIC_DIR"] = static_dir
    return config


def load_config_file(path: str) -> dict:
    """Read a config file; relative paths in it are taken relative to its directory."""
    import yaml

    from ..common.yamlloader import load_config

    try:
        config = load_config(path)
    except (yaml.YAMLError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot load the config file {path}: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    for key in ("APP_FILE", "STATIC_DIR"):
        value = config.get(key)
        if value and isinstance(value, str) and not os.path.isabs(value):
            config[key] = os.path.join(base, value)
    for backend in (config.get("BACKENDS") or {}).values():
        master = backend.get("master", "")
        # a relative SQLite file is relative to the config file, like APP_FILE
        if isinstance(master, str) and master.startswith("sqlite:///") and not master.startswith("sqlite:////"):
            backend["master"] = "sqlite:///" + os.path.join(base, master[len("sqlite:///"):])
    return config


def app_config(config_path: str | None, app_file: str, namespace: str | None, instance: str | None, db: str,
               **server_flags) -> dict:
    """The configuration a command runs with: the config file when given, else the flags
    (``server_flags`` are :func:`config_from_flags`' keyword arguments)."""
    if config_path:
        config = load_config_file(config_path)
    else:
        if not namespace or not instance:
            raise click.UsageError("--namespace and --instance are required without --config")
        config = config_from_flags(app_file, namespace, instance, db, **server_flags)
    for key in ("NAMESPACE", "INSTANCES", "BACKENDS"):
        if not config.get(key):
            raise click.UsageError(f"the configuration lacks {key}")
    return config
