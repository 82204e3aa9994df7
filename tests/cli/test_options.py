"""The commands' options are those docs/cli.md lists, with the defaults it gives."""

from pathlib import Path

import pytest

from hetu.cli.build import build
from hetu.cli.start import start
from hetu.cli.upgrade import upgrade

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def documented_options(command_name: str) -> dict[str, str | None]:
    """Option -> documented default (None when the table has no default column)."""
    section = CLI_DOC.read_text().split(f"## hetu {command_name}\n", 1)[1].split("\n## ", 1)[0]
    options = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| `-") and len(cells) in (2, 3):
            options[cells[0].strip("`")] = cells[1].strip("`") if len(cells) == 3 else None
    return options


@pytest.mark.parametrize("command", [start, upgrade, build], ids=lambda c: c.name)
def test_every_option_is_documented_and_every_documented_option_exists(command):
    documented = documented_options(command.name)
    declared = {opt: param for param in command.params for opt in param.opts}
    assert set(documented) == set(declared)
    for option, default in documented.items():
        param = declared[option]
        if param.show_default:  # a default --help shows is the one the table gives
            assert default == str(param.default), option


def test_start_and_upgrade_name_the_app_and_its_database_alike():
    def shared(command):
        return [(p.opts, p.default, p.help) for p in command.params
                if p.name in ("app_file", "namespace", "instance", "db")]

    assert shared(start) == shared(upgrade) and len(shared(start)) == 4
