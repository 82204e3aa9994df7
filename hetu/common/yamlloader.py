"""Loading config.yml: ``${VAR}`` / ``${VAR:-default}`` interpolation, ``!eval``, ``!include``."""

from __future__ import annotations

import json
import os
import re

import yaml

_VAR = re.compile(r"\$\{([^{}]*)\}")


class Loader(yaml.SafeLoader):
    """A safe YAML loader with HeTu's extensions."""


def _interpolate(text: str) -> str:
    def repl(match: re.Match) -> str:
        name, sep, default = match.group(1).partition(":-")
        name = name.strip()
        if name in os.environ:
            return os.environ[name]
        if sep:
            return default
        raise yaml.constructor.ConstructorError(
            None, None, f"environment variable ${{{name}}} is not set and has no default (${{{name}:-default}})"
        )

    return _VAR.sub(repl, text)


def _string(loader: Loader, node: yaml.Node) -> str:
    return _interpolate(loader.construct_scalar(node))


def _eval(loader: Loader, node: yaml.Node):
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(None, None, "!eval expected a sequence, e.g. !eval [2 ** 19]", node.start_mark)
    args = loader.construct_sequence(node, deep=True)
    return eval(*args)  # noqa: S307 - config files are trusted code, like the app


def _include(loader: Loader, node: yaml.Node):
    base = os.path.dirname(getattr(loader, "name", "") or ".")
    path = os.path.join(base, loader.construct_scalar(node))
    with open(path, encoding="utf-8") as f:
        if path.endswith((".yml", ".yaml")):
            return yaml.load(f, Loader)  # noqa: S506 - our safe loader
        if path.endswith(".json"):
            return json.load(f)
        return f.read()


Loader.add_constructor("tag:yaml.org,2002:str", _string)
Loader.add_constructor("!eval", _eval)
Loader.add_constructor("!include", _include)


def load_config(path: str) -> dict:
    """Read a ``config.yml`` with HeTu's tags (``!eval``, ``!include``, ``${VAR:-default}``) into a dict."""
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader)  # noqa: S506 - our safe loader
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must be a mapping of KEY: value")
    return data
