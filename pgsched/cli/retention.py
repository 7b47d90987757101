"""``pgsched retention list|set|unset``: how long each queue keeps its finished jobs, per final state.

Interface layer over ``RetentionStore``. A change applies to jobs that finish afterwards (a job's purge_at is
fixed when it finishes). Queue ``*`` holds the defaults, set by the leader from PGSCHED_RETENTION_*_SECONDS.
"""

from __future__ import annotations

import click

from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cli.jobs import parse_duration
from pgsched.cli.stores import CliStores, with_stores
from pgsched.retention import HistoryHorizon, RetentionNotFound, RetentionRule, format_seconds

__all__ = ["retention"]

_APPLIES = "Applies to jobs that finish from then on: jobs already finished keep the purge_at they got."


@cli.group(help=f"How long finished jobs are kept, per queue and final state (succeeded, dead, cancelled). {_APPLIES}")
def retention() -> None:
    pass


@retention.command("list")
@click.option("--queue", default=None, help="The retention this queue's jobs get per state, and from where.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def retention_list(ctx: CliContext, queue: str | None, as_json: bool) -> None:
    """List retention rows (queue * holds the defaults, from PGSCHED_RETENTION_*_SECONDS)."""

    async def fetch(s: CliStores) -> list[RetentionRule]:
        return await s.retention.retention_list(queue)

    rows = [r.to_dict() for r in with_stores(ctx.settings, fetch)]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["queue", "state", "keep", "keep_seconds", "source", "updated_at"], empty="(no retention)")


@retention.command(
    "set", help=f"Keep QUEUE's jobs that end in STATE for DURATION: 90d, 12h, 30m, 3600s or seconds. {_APPLIES}"
)
@click.argument("queue")
@click.argument("state")
@click.argument("duration")
@pass_ctx
def retention_set(ctx: CliContext, queue: str, state: str, duration: str) -> None:
    keep = parse_duration(duration, "duration").total_seconds()

    async def act(s: CliStores) -> tuple[RetentionRule, HistoryHorizon]:
        rule = await s.retention.retention_set(queue, state, keep)
        return rule, await s.retention.history_horizon_get()

    rule, horizon = with_stores(ctx.settings, act)
    click.echo(f"{rule.queue} {rule.state}: kept {format_seconds(rule.keep_seconds)} (jobs that finish from now on)")
    warning = horizon.warning(rule.keep_seconds, horizon.width_seconds or ctx.settings.history_partition_seconds)
    if warning:
        click.echo(f"Warning: {warning}", err=True)


@retention.command("unset")
@click.argument("queue")
@click.argument("state")
@pass_ctx
def retention_unset(ctx: CliContext, queue: str, state: str) -> None:
    """Remove QUEUE's own retention for STATE: its jobs that finish from then on get the default."""

    async def act(s: CliStores) -> RetentionRule:
        return await s.retention.retention_unset(queue, state)

    try:
        rule = with_stores(ctx.settings, act)
    except RetentionNotFound as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{rule.queue} {rule.state}: back to the default (was {format_seconds(rule.keep_seconds)})")
