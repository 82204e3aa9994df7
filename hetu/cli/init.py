"""``hetu init``: scaffold a runnable project (a Player component, login and disconnect
systems, a SQLite config) that ``hetu start --config=config.yml`` serves as it is."""

from __future__ import annotations

import keyword
import sys
from importlib import resources
from pathlib import Path

import click

from ..common.csharp_keywords import CSHARP_KEYWORDS

# project path -> template file under hetu/cli/templates; `{ns}` is the package directory
PROJECT_FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "config.yml": "config.yml.tmpl",
    "src/app.py": "app.py.tmpl",
    "src/{ns}/__init__.py": "package_init.py.tmpl",
    "src/{ns}/component/__init__.py": "component_init.py.tmpl",
    "src/{ns}/component/player.py": "player.py.tmpl",
    "src/{ns}/system/__init__.py": "system_init.py.tmpl",
    "src/{ns}/system/login.py": "login.py.tmpl",
}
# the SQLite database of config.yml (with its -wal and -shm files), and bytecode
GITIGNORE_ENTRIES = ["hetu.db*", "__pycache__/"]


def namespace_of(project_name: str) -> str:
    """The namespace (and package name) of a project directory: ``my-game`` -> ``my_game``.

    Raises ``ValueError`` when the result cannot be a Python package of its own.
    """
    namespace = project_name.replace("-", "_")
    if not namespace.isidentifier():
        raise ValueError(
            f"the directory name {project_name!r} does not give a valid namespace ({namespace!r} is not "
            f"a Python identifier); use letters, digits, '_' or '-', not starting with a digit, e.g. my-game")
    if keyword.iskeyword(namespace) or namespace in CSHARP_KEYWORDS:
        raise ValueError(
            f"the namespace {namespace!r} (from the directory name) is a Python or C# keyword, which "
            f"cannot name the package or the client's C# namespace; choose another directory name")
    if namespace == "hetu" or namespace in sys.stdlib_module_names:
        raise ValueError(
            f"the namespace {namespace!r} (from the directory name) would shadow the Python module "
            f"of that name; choose another directory name, e.g. {namespace}_server")
    return namespace


def render_template(name: str, namespace: str, project: str) -> str:
    """A packaged template with ``__NAMESPACE__`` and ``__PROJECT__`` filled in."""
    text = (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")
    return text.replace("__NAMESPACE__", namespace).replace("__PROJECT__", project)


def write_new_file(root: Path, relative: str, content: str) -> bool:
    """Create ``root/relative`` holding ``content``; an existing file is kept as it is.

    Returns whether the file was created; prints what happened either way.
    """
    path = root / relative
    if path.exists():
        click.echo(f"exists, skipped {relative}")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    click.echo(f"created {relative}")
    return True


def ensure_lines(root: Path, relative: str, lines: list[str]) -> None:
    """Append the ``lines`` a text file lacks (creating it when missing); nothing is removed."""
    path = root / relative
    if not path.exists():
        write_new_file(root, relative, "\n".join(lines) + "\n")
        return
    text = path.read_text(encoding="utf-8")
    present = set(text.splitlines())
    missing = [line for line in lines if line not in present]
    if not missing:
        click.echo(f"exists, skipped {relative}")
        return
    prefix = "" if text.endswith("\n") or not text else "\n"
    path.write_text(text + prefix + "\n".join(missing) + "\n", encoding="utf-8")
    click.echo(f"updated {relative} (added {', '.join(missing)})")


def scaffold(root: Path) -> str:
    """Write the project files under ``root`` (skipping existing ones); returns the namespace."""
    root = root.resolve()
    project = root.name
    namespace = namespace_of(project)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    for relative, template in PROJECT_FILES.items():
        write_new_file(root, relative.format(ns=namespace), render_template(template, namespace, project))
    ensure_lines(root, ".gitignore", GITIGNORE_ENTRIES)
    return namespace


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a project in DIRECTORY (default: the current one) that `hetu start` can serve.

    The namespace and package name are the directory name with '-' replaced by '_'.
    Existing files are never overwritten, so running it again only adds what is missing.
    """
    try:
        namespace = scaffold(directory)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    steps = [] if directory.resolve() == Path.cwd() else [f"cd {directory}"]
    steps += [
        "pip install -e .                  # installs hetudb and numpy",
        "hetu start --config=config.yml    # serves ws://127.0.0.1:2466/hetu/main",
        "hetu build --config=config.yml --output=Components.cs   # client row types (.ts: TypeScript)",
    ]
    click.echo(f"\nnamespace {namespace} is ready; next:")
    for step in steps:
        click.echo(f"  {step}")
    click.echo(f"Components go under src/{namespace}/component/, systems under src/{namespace}/system/.")
