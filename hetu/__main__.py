"""The ``hetu`` command line."""

from __future__ import annotations

import click

import hetu


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(hetu.__version__, prog_name="hetu")
def cli() -> None:
    """HeTu game-server engine: serve an app.py of components and systems."""


def _register() -> None:
    from .cli.build import build
    from .cli.init import init
    from .cli.start import start
    from .cli.upgrade import upgrade

    cli.add_command(start)
    cli.add_command(upgrade)
    cli.add_command(build)
    cli.add_command(init)


def main() -> None:
    """Entry point of the ``hetu`` command (``python -m hetu`` too): register the sub-commands and run."""
    _register()
    cli()


if __name__ == "__main__":
    main()
