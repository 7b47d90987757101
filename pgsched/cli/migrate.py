"""``pgsched migrate``: apply or show schema migrations."""

from __future__ import annotations

import asyncio

import click

from pgsched import db
from pgsched.cli.base import CliContext, cli, echo_json, pass_ctx
from pgsched.config import Settings
from pgsched.maintenance import Pruner
from pgsched.migrate import Migrator

__all__ = ["migrate"]


@cli.command()
@click.option("--status", is_flag=True, help="List migrations and whether each is applied.")
@click.option("--sql", "show_sql", is_flag=True, help="Print the SQL of pending migrations instead of running it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with --status).")
@pass_ctx
def migrate(ctx: CliContext, status: bool, show_sql: bool, as_json: bool) -> None:
    """Apply pending migrations (safe to run concurrently; a second run is a no-op), then create the history
    partitions ahead for the configured retention (PGSCHED_RETENTION_*, PGSCHED_HISTORY_PARTITION_SECONDS)."""
    dsn = ctx.settings.session_dsn or ctx.dsn()
    migrator = Migrator(dsn)
    if status:
        rows = [
            {"version": s.migration.version, "name": s.migration.name, "applied_at": s.applied_at}
            for s in migrator.status()
        ]
        if as_json:
            echo_json(rows)
        else:
            for r in rows:
                mark = f"applied {r['applied_at']:%Y-%m-%d %H:%M:%S}" if r["applied_at"] else "pending"
                click.echo(f"{r['version']:04d}_{r['name']}  {mark}")
        return
    if show_sql:
        click.echo(migrator.pending_sql() or "-- nothing to apply")
        return
    applied = migrator.migrate()
    for m in applied:
        click.echo(f"applied {m.path.name}")
    created = asyncio.run(_prepare_history(dsn, ctx.settings))
    if created:
        click.echo(f"created {created} history partition{'s' if created != 1 else ''} ahead")
    if not applied and not created:
        click.echo("schema is up to date")


async def _prepare_history(dsn: str, settings: Settings) -> int:
    """What a first leader would create, created now, before any worker runs: see ``Pruner.prepare``."""
    async with await db.session_async(dsn, "migrate") as conn:
        return (await Pruner(settings).prepare(conn))["created"]
