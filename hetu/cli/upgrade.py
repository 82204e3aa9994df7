"""``hetu upgrade``: bring the stored tables in line with the app's components."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ..data.backend import Backend
from ..data.backend.maintenance import flush_volatile
from ..data.migration import MigrationError, TableReport, upgrade_table
from .options import app_config, app_options

RESULT_MARKS = {"created": "+", "ok": " ", "migrated": "~", "recreated": "~", "refused": "!"}


def load_app(config: dict) -> Path:
    """Import the app and build its clusters; returns the app's directory."""
    from ..appfile import load_app_file
    from ..system.definer import SystemClusters

    app_file = Path(config.get("APP_FILE") or "app.py")
    load_app_file(app_file)
    clusters = SystemClusters()
    if not clusters.is_built(config["NAMESPACE"]):
        clusters.build_clusters(config["NAMESPACE"])
    return app_file.resolve().parent


async def upgrade_instances(config: dict, app_dir: Path, drop_data: bool) -> dict[str, list[TableReport]]:
    """Create, check and migrate the tables of every instance, then flush volatile ones."""
    from ..manager import ComponentTableManager

    backends: dict[str, Backend] = {}
    for name, cfg in (config.get("BACKENDS") or {}).items():
        backends[name] = Backend.from_config(cfg)
        backends.setdefault("default", backends[name])
    reports: dict[str, list[TableReport]] = {}
    try:
        for backend in set(backends.values()):
            await backend.open()
        for instance in config["INSTANCES"]:
            manager = ComponentTableManager(config["NAMESPACE"], instance, backends)
            reports[instance] = [
                await upgrade_table(table.backend, table.ref, app_dir, drop_data)
                for table in sorted(manager.tables.values(), key=lambda t: t.ref.comp_name)
            ]
            if all(r.action != "refused" for r in reports[instance]):
                for table in manager.tables.values():
                    await flush_volatile(table.backend, [table.ref])
    finally:
        for backend in set(backends.values()):
            await backend.close()
    return reports


@click.command("upgrade", short_help="Create and migrate the app's tables.")
@app_options("Config file (config.yml); --app-file, --namespace, --instance and --db are ignored when given.")
@click.option("-y", "yes", is_flag=True, help="Do not ask to confirm that the data is backed up.")
@click.option("--drop-data", is_flag=True,
              help="Also apply changes that lose data (removed columns, narrowing casts). Never in production.")
def upgrade(config_path, app_file, namespace, instance, db, yes, drop_data) -> None:
    """Create missing tables and migrate changed ones to the app's component definitions.

    Changed schemas are migrated by scripts under <app dir>/maint/migration/ (written
    when missing, so they can be reviewed and edited); tables whose cluster id changed
    are moved; volatile tables are emptied. Changes that lose data are refused unless
    --drop-data is given. Stop the servers first.
    """
    config = app_config(config_path, app_file, namespace, instance, db)
    from ..appfile import configure_logging

    configure_logging(config)  # migration notes, backups and progress are logged
    app_dir = load_app(config)
    if not yes:
        click.confirm("Upgrading changes stored data. Is it backed up, and are the servers stopped?",
                      abort=True)
    if drop_data:
        click.confirm("--drop-data may delete columns and truncate values for good. Continue?", abort=True)
    try:
        reports = asyncio.run(upgrade_instances(config, app_dir, drop_data))
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    refused = False
    for instance_name, tables in reports.items():
        click.echo(f"instance {instance_name}:")
        for report in tables:
            rows = f" ({report.rows} rows)" if report.action == "migrated" else ""
            click.echo(f"  {RESULT_MARKS[report.action]} {report.name}: {report.action}{rows}")
            for note in report.notes:
                click.echo(f"      {note}")
            refused |= report.action == "refused"
    if refused:
        raise click.ClickException(
            "some tables need changes that lose data (see above); review the scripts under "
            f"{app_dir / 'maint' / 'migration'}, or run again with --drop-data")
    click.echo("upgrade done")
