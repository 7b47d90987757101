"""``pgsched jobs list|show|cancel|retry``, ``pgsched dead list|retry|purge``, ``pgsched queues``, ``pgsched workers``.

Interface layer: human tables by default, ``--json`` for scripts; bad input exits 2 with one line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from pgsched.cli.base import CliContext, cli, echo_json, echo_table, pass_ctx
from pgsched.cli.jobs import parse_args_json, parse_duration
from pgsched.cli.stores import CliStores, with_stores
from pgsched.errors import JobNotFound, ValidationError
from pgsched.job import validate_meta, validate_queue, validate_tags, validate_task_name
from pgsched.job_row import Job, JobState
from pgsched.queue_settings import QueueChanges

__all__ = ["dead", "jobs", "queues", "workers"]

JOB_ID = click.IntRange(1, 2**63 - 1)
_JOB_COLUMNS = ["id", "state", "queue", "task", "attempt", "run_at", "run_key"]
_STATES = click.Choice([s.value for s in JobState])


def _row(job: Job) -> dict[str, Any]:
    data = job.to_dict()
    data["attempt"] = f"{job.attempt}/{job.max_attempts}"
    data["run_at"] = f"{job.run_at:%Y-%m-%d %H:%M:%S%z}"
    return data


def _shown(value: Any) -> str:
    """One field of ``jobs show`` for people: JSON for structured values, '-' for none."""
    if value is None:
        return "-"
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _filters(queue: str | None, task: str | None) -> dict[str, Any]:
    return {
        "queue": validate_queue(queue) if queue else None,
        "task": validate_task_name(task) if task else None,
    }


def _list(ctx: CliContext, limit: int, before: int | None, as_json: bool, **filters: Any) -> None:
    async def fetch(s: CliStores) -> list[Job]:
        return await s.operator.job_list(before_id=before, limit=limit, **filters)

    rows = with_stores(ctx.settings, fetch)
    if as_json:
        more = len(rows) == limit
        echo_json({"items": [j.to_dict() for j in rows], "next_before": rows[-1].id if rows and more else None})
    else:
        echo_table([_row(j) for j in rows], _JOB_COLUMNS, empty="(no jobs)")


@cli.group()
def jobs() -> None:
    """Inspect and act on jobs."""


@jobs.command("list")
@click.option("--state", type=_STATES)
@click.option("--queue")
@click.option("--task")
@click.option("--tag", "tags", multiple=True, help="Only jobs with this tag (repeat: all of them).")
@click.option("--meta", "meta_json", help='Only jobs whose meta contains this JSON object, e.g. {"tenant": "acme"}.')
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", type=JOB_ID, help="Only jobs with a smaller id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def jobs_list(
    ctx: CliContext,
    state: str | None,
    queue: str | None,
    task: str | None,
    tags: tuple[str, ...],
    meta_json: str | None,
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    labels = {"tags": list(validate_tags(tags, "tag")), "meta": validate_meta(parse_args_json(meta_json, "meta"))}
    _list(ctx, limit, before, as_json, state=state, **_filters(queue, task), **labels)


@jobs.command("show")
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def jobs_show(ctx: CliContext, job_id: int, as_json: bool) -> None:
    """Show one job with its attempt history."""

    async def fetch(s: CliStores) -> Job | None:
        return await s.jobs.job_get(job_id)

    job = with_stores(ctx.settings, fetch)
    if job is None:
        raise JobNotFound(job_id)
    data = job.to_dict()
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if key != "errors":
            click.echo(f"{key:>20}: {_shown(value)}")
    for entry in job.errors:
        kind = entry.get("kind") or "exception"
        which = "never started" if entry.get("attempt") is None else f"attempt {entry.get('attempt')}"  # expired
        click.echo(f"  {which} at {entry.get('at')} [{kind}]: {entry.get('error')}")


@jobs.command("cancel")
@click.argument("job_id", type=JOB_ID)
@pass_ctx
def jobs_cancel(ctx: CliContext, job_id: int) -> None:
    """Cancel a job (a running job is signalled and stops soon)."""

    async def act(s: CliStores) -> JobState:
        return await s.operator.job_cancel(job_id)

    state = with_stores(ctx.settings, act)
    click.echo(f"job {job_id}: {'cancel requested (running)' if state is JobState.RUNNING else state}")


@jobs.command("retry")
@click.argument("job_id", type=JOB_ID)
@pass_ctx
def jobs_retry(ctx: CliContext, job_id: int) -> None:
    """Queue a finished or waiting job to run now."""

    async def act(s: CliStores) -> None:
        await s.operator.job_retry(job_id)

    with_stores(ctx.settings, act)
    click.echo(f"job {job_id}: queued")


@cli.group()
def dead() -> None:
    """The dead-letter queue: jobs out of attempts."""


@dead.command("list")
@click.option("--queue")
@click.option("--task")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", type=JOB_ID, help="Only jobs with a smaller id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def dead_list(
    ctx: CliContext, queue: str | None, task: str | None, limit: int, before: int | None, as_json: bool
) -> None:
    """List dead jobs, newest first."""
    _list(ctx, limit, before, as_json, state="dead", **_filters(queue, task))


@dead.command("retry")
@click.argument("job_ids", nargs=-1, type=JOB_ID)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job (of --queue / --task).")
@click.option("--queue")
@click.option("--task")
@pass_ctx
def dead_retry(ctx: CliContext, job_ids: tuple[int, ...], retry_all: bool, queue: str | None, task: str | None) -> None:
    """Retry the given dead jobs, or all of them with --all."""
    if bool(job_ids) == retry_all:
        raise click.UsageError("give job ids or --all")
    filters = _filters(queue, task)

    async def act(s: CliStores) -> list[int]:
        if retry_all:
            return await s.operator.dead_retry_many(**filters)
        for job_id in job_ids:
            await s.operator.job_retry(job_id)
        return list(job_ids)

    ids = with_stores(ctx.settings, act)
    click.echo(f"retried {len(ids)} job(s)")


@dead.command("purge")
@click.option("--queue")
@click.option("--task")
@click.option("--older-than", help="Only jobs dead for longer than this (30s, 5m, 2h, 7d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def dead_purge(ctx: CliContext, queue: str | None, task: str | None, older_than: str | None, yes: bool) -> None:
    """Delete dead jobs for good."""
    filters = _filters(queue, task)
    age = parse_duration(older_than, "older-than") if older_than else None
    if not yes:
        click.confirm("Delete these dead jobs for good?", abort=True)

    async def act(s: CliStores) -> int:
        before = datetime.now(UTC) - age if age is not None else None
        return await s.operator.dead_purge(before=before, **filters)

    click.echo(f"purged {with_stores(ctx.settings, act)} job(s)")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@click.pass_context
def queues(click_ctx: click.Context, ctx: CliContext, as_json: bool) -> None:
    """Depth, oldest due job and limits per queue; pause, resume and limit a queue."""
    if click_ctx.invoked_subcommand is not None:
        return

    async def fetch(s: CliStores) -> list[dict[str, Any]]:
        return await s.operator.queue_stats_list()

    rows = with_stores(ctx.settings, fetch)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        r["oldest_due"] = "-" if r["oldest_due_seconds"] is None else f"{r['oldest_due_seconds']:.1f}s"
        r["limits"] = _limits_text(r)
    echo_table(
        rows,
        ["queue", "due", "scheduled", "running", "succeeded", "dead", "cancelled", "oldest_due", "limits"],
        empty="(no queues)",
    )


def _limits_text(r: dict[str, Any]) -> str:
    parts = ["PAUSED"] if r["paused"] else []
    if r["concurrency_limit"] is not None:
        parts.append(f"concurrency {r['concurrency_limit']}")
    if r["rate_limit"] is not None:
        parts.append(f"rate {r['rate_limit']}/{r['rate_period_seconds']:g}s")
    return ", ".join(parts) or "-"


def _configure(ctx: CliContext, name: str, changes: dict[str, Any]) -> None:
    settings = QueueChanges.build(changes)

    async def act(s: CliStores) -> dict[str, Any]:
        return await s.operator.queue_configure(name, settings)

    row = with_stores(ctx.settings, act)
    row["paused"] = bool(row["paused"])
    click.echo(f"{row['queue']}: {_limits_text({**row, 'concurrency_limit': row['concurrency']})}")


@queues.command("pause")
@click.argument("name")
@pass_ctx
def queues_pause(ctx: CliContext, name: str) -> None:
    """Stop starting jobs of queue NAME on every worker (running jobs go on)."""
    _configure(ctx, name, {"paused": True})


@queues.command("resume")
@click.argument("name")
@pass_ctx
def queues_resume(ctx: CliContext, name: str) -> None:
    """Start jobs of queue NAME again."""
    _configure(ctx, name, {"paused": False})


def _limit_option(value: str | None, field: str) -> int | None:
    if value is None or value == "none":
        return None
    if not value.isdigit():
        raise ValidationError(field, f"must be a positive integer or 'none', got {value!r}")
    return int(value)


@queues.command("set")
@click.argument("name")
@click.option("--concurrency", help="Jobs of the queue running at once, cluster-wide ('none': unlimited).")
@click.option("--rate", help="Job starts per period: N/PERIOD, e.g. 50/1s, 1000/1m ('none': unlimited).")
@click.option("--burst", help="Starts allowed at once after a quiet spell (default: rate/20, at least 1).")
@pass_ctx
def queues_set(ctx: CliContext, name: str, concurrency: str | None, rate: str | None, burst: str | None) -> None:
    """Set flow-control limits of queue NAME (only the options given change)."""
    changes: dict[str, Any] = {}
    if concurrency is not None:
        changes["concurrency"] = _limit_option(concurrency, "concurrency")
    if rate is not None:
        if rate == "none":
            changes["rate_limit"] = None
        else:
            count, sep, period = rate.partition("/")
            changes["rate_limit"] = _limit_option(count, "rate")
            changes["rate_period_seconds"] = parse_duration(period, "rate").total_seconds() if sep else 1.0
    if burst is not None:
        changes["rate_burst"] = _limit_option(burst, "burst")
    _configure(ctx, name, changes)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def workers(ctx: CliContext, as_json: bool) -> None:
    """Registered workers and schedulers, their heartbeats, and the leader."""

    async def fetch(s: CliStores) -> list[dict[str, Any]]:
        return [w.to_dict() for w in await s.admin.cluster_list()]

    rows = with_stores(ctx.settings, fetch)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        r["queues"] = ",".join(r["queues"])
        r["heartbeat"] = f"{r['heartbeat_age_seconds']:.1f}s ago"
        r["leader"] = "yes" if r["is_leader"] else ""
    echo_table(
        rows,
        ["id", "role", "host", "pid", "queues", "concurrency", "heartbeat", "alive", "leader"],
        empty="(no workers)",
    )
