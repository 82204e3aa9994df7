"""``hetu build``: write the client's row types (C# or TypeScript) for an app's components."""

from __future__ import annotations

from pathlib import Path

import click

from .options import config_option, load_config_file

LANGUAGES = ("csharp", "typescript")
LANGUAGE_NAMES = {"csharp": "C#", "typescript": "TypeScript"}


def language_of(output: Path, lang: str | None) -> str:
    """``lang`` when given, else TypeScript for a ``.ts`` output and C# otherwise."""
    if lang:
        return lang
    return "typescript" if output.suffix == ".ts" else "csharp"


def render(namespace: str, lang: str) -> tuple[str, int]:
    """Source text for the client-readable components of the built ``namespace``, and how many."""
    from ..sourcegen import client_components, csharp, typescript

    components = client_components(namespace)
    generator = csharp if lang == "csharp" else typescript
    return generator.generate(namespace, components), len(components)


@click.command("build", short_help="Write the client's row types (C# or TypeScript).")
@config_option("Config file (config.yml) to take APP_FILE and NAMESPACE from.")
@click.option("--app-file", default=None,
              help="The app's Python file [default: APP_FILE of --config, else ./app.py].")
@click.option("--namespace", default=None, help="The app namespace [default: NAMESPACE of --config].")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write, e.g. Assets/Scripts/Components.cs or src/components.ts.")
@click.option("--lang", type=click.Choice(LANGUAGES), default=None,
              help="Output language [default: typescript for a .ts output, else csharp].")
def build(config_path, app_file, namespace, output: Path, lang) -> None:
    """Generate client classes of the rows a client can read: `hetu build --app-file=./src/app.py
    --namespace=Chat --output=Components.cs`, or `hetu build --config=./config.yml --output=rows.ts`.

    Every component used by the namespace's systems is written, except ADMIN ones; the
    file is left untouched when its content would not change.
    """
    config = load_config_file(config_path) if config_path else {}
    app_file = app_file or config.get("APP_FILE") or "./app.py"
    namespace = namespace or config.get("NAMESPACE")
    if not namespace:
        raise click.UsageError("--namespace is required (or a --config that sets NAMESPACE)")
    lang = language_of(output, lang)

    from ..appfile import load_app_file
    from ..sourcegen import write_if_changed
    from ..system.definer import SystemClusters

    try:
        load_app_file(app_file)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        SystemClusters().build_clusters(namespace)
        text, count = render(namespace, lang)
    except (AssertionError, RuntimeError, ValueError) as exc:
        # a namespace without systems, a missing `depends` target, names C# cannot take
        raise click.ClickException(str(exc)) from None
    if write_if_changed(output, text):
        plural = "" if count == 1 else "s"
        click.echo(f"wrote {output} ({LANGUAGE_NAMES[lang]}, {count} component{plural})")
    else:
        click.echo(f"{output} is up to date, not rewritten")
