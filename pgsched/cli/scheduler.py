"""``pgsched scheduler`` (leader candidate only) and ``pgsched schedules ...`` (manage cron schedules)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from pgsched import db
from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cron import parse_cron
from pgsched.errors import ValidationError
from pgsched.schedule_store import Schedule, ScheduleSpec, ScheduleStore
from pgsched.scheduler import Scheduler
from pgsched.service import run_services

__all__ = ["scheduler", "schedules"]

T = TypeVar("T")


@cli.command()
@pass_ctx
def scheduler(ctx: CliContext) -> None:
    """Run a leader candidate only: cron firing, reaper and pruner (no jobs are executed here)."""
    ctx.database()
    asyncio.run(run_services([Scheduler(ctx.settings)]))


def _with_store(ctx: CliContext, action: Callable[[ScheduleStore], Awaitable[T]]) -> T:
    async def go() -> T:
        pool = db.async_pool(ctx.database(), "cli", min_size=1, max_size=1)
        await pool.open()
        try:
            return await action(ScheduleStore(pool))
        finally:
            await pool.close()

    return asyncio.run(go())


def _row(s: Schedule) -> dict[str, Any]:
    return {
        "name": s.name,
        "cron": s.cron,
        "timezone": s.timezone,
        "task": s.task,
        "queue": s.queue,
        "enabled": s.enabled,
        "misfire": s.misfire_policy,
        "next_fire_at": s.next_fire_at,
        "last_fired_at": s.last_fired_at,
        "last_error": s.last_error,
    }


@cli.group()
def schedules() -> None:
    """Manage cron schedules."""


@schedules.command("add")
@click.argument("name")
@click.argument("cron")
@click.argument("task")
@click.option("--args", "args_json", help="Task arguments as a JSON object.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the cron expression.")
@click.option("--queue", default=None, help="Default: the task's declared queue.")
@click.option("--priority", type=int, default=None, help="Default: the task's declared priority.")
@click.option("--max-attempts", type=int, default=None)
@click.option("--misfire", type=click.Choice(["skip", "once", "catch_up"]), default="once", show_default=True)
@click.option("--misfire-grace", type=float, default=3600.0, show_default=True, help="Seconds.")
@click.option("--paused", is_flag=True, help="Create it disabled.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedules_add(
    ctx: CliContext,
    name: str,
    cron: str,
    task: str,
    args_json: str | None,
    timezone: str,
    queue: str,
    priority: int | None,
    max_attempts: int | None,
    misfire: str,
    misfire_grace: float,
    paused: bool,
    as_json: bool,
) -> None:
    """Create or replace schedule NAME firing TASK on CRON (5 fields, or 6 with seconds first)."""
    try:
        args = json.loads(args_json) if args_json else {}
    except json.JSONDecodeError as exc:
        raise ValidationError("args", f"is not valid JSON: {exc.msg}") from None
    spec = ScheduleSpec.build(
        name,
        cron,
        task,
        args,
        timezone=timezone,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        enabled=not paused,
        misfire_policy=misfire,
        misfire_grace_seconds=misfire_grace,
    )
    schedule, created = _with_store(ctx, lambda store: store.schedule_upsert(spec))
    if as_json:
        echo_json({**schedule.to_dict(), "created": created})
    else:
        click.echo(f"{'created' if created else 'updated'} {schedule.name}: next fire {schedule.next_fire_at}")


@schedules.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedules_list(ctx: CliContext, as_json: bool) -> None:
    """List schedules."""
    rows = _with_store(ctx, lambda store: store.schedule_list(limit=1000))
    if as_json:
        echo_json([s.to_dict() for s in rows])
    else:
        echo_table(
            [_row(s) for s in rows], ["name", "cron", "timezone", "task", "enabled", "next_fire_at", "last_error"]
        )


@schedules.command("show")
@click.argument("name")
@click.option("--runs", type=int, default=10, show_default=True, help="How many recent runs to show.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedules_show(ctx: CliContext, name: str, runs: int, as_json: bool) -> None:
    """Show one schedule and its recent runs."""

    async def fetch(store: ScheduleStore) -> tuple[Schedule, list[Any]]:
        return await store.schedule_get(name), await store.schedule_runs(name, limit=runs)

    schedule, jobs = _with_store(ctx, fetch)
    if as_json:
        echo_json({**schedule.to_dict(), "runs": [j.to_dict() for j in jobs]})
        return
    for key, value in _row(schedule).items():
        click.echo(f"{key:>14}: {value if value is not None else '-'}")
    click.echo("")
    echo_table(
        [{"id": j.id, "state": str(j.state), "run_at": j.run_at, "finished_at": j.finished_at} for j in jobs],
        ["id", "state", "run_at", "finished_at"],
        empty="(no runs yet)",
    )


def _set_enabled(ctx: CliContext, name: str, enabled: bool) -> None:
    schedule = _with_store(ctx, lambda store: store.schedule_set_enabled(name, enabled))
    word = "resumed" if enabled else "paused"
    click.echo(f"{word} {schedule.name}" + (f": next fire {schedule.next_fire_at}" if enabled else ""))


@schedules.command("pause")
@click.argument("name")
@pass_ctx
def schedules_pause(ctx: CliContext, name: str) -> None:
    """Stop a schedule from firing."""
    _set_enabled(ctx, name, False)


@schedules.command("resume")
@click.argument("name")
@pass_ctx
def schedules_resume(ctx: CliContext, name: str) -> None:
    """Fire again from the next instant on (ticks missed while paused are not fired)."""
    _set_enabled(ctx, name, True)


@schedules.command("remove")
@click.argument("name")
@pass_ctx
def schedules_remove(ctx: CliContext, name: str) -> None:
    """Delete a schedule (its past jobs stay)."""
    _with_store(ctx, lambda store: store.schedule_delete(name))
    click.echo(f"removed {name}")


@schedules.command("trigger")
@click.argument("name")
@pass_ctx
def schedules_trigger(ctx: CliContext, name: str) -> None:
    """Enqueue one job of the schedule now; prints the job id."""
    job = _with_store(ctx, lambda store: store.schedule_trigger(name))
    click.echo(str(job.id))


@schedules.command("preview")
@click.argument("name_or_cron")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--timezone", default=None, help="With a cron expression instead of a name.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def schedules_preview(ctx: CliContext, name_or_cron: str, count: int, timezone: str | None, as_json: bool) -> None:
    """Print the next fire instants of a schedule (by NAME) or of a cron expression, in UTC and local time."""
    if len(name_or_cron.split()) in (5, 6):
        spec = parse_cron(name_or_cron, timezone or "UTC")
    else:
        schedule = _with_store(ctx, lambda store: store.schedule_get(name_or_cron))
        spec = parse_cron(schedule.cron, timezone or schedule.timezone)
    instants = spec.preview(datetime.now(UTC), count)
    rows = [{"utc": i.isoformat(), "local": i.astimezone(spec.zone).isoformat()} for i in instants]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["utc", "local"])
