"""``pgsched enqueue``: enqueue a job from the shell."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TextIO

import click

from pgsched.cli.base import CliContext, cli, echo_json, pass_ctx
from pgsched.client import Client
from pgsched.clock import SystemClock
from pgsched.config import Settings
from pgsched.errors import ValidationError
from pgsched.job import NewJob
from pgsched.job_input import new_job_from_json

__all__ = ["BULK_CHUNK", "enqueue", "parse_duration", "read_jobs_file"]

BULK_CHUNK = 1000

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str, field: str) -> timedelta:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d``, ``250ms``."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValidationError(field, f"invalid duration {text!r}: use e.g. 30s, 5m, 2h, 1d")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    except OverflowError:
        raise ValidationError(field, f"duration {text!r} is out of range") from None


def parse_args_json(text: str | None, field: str = "args") -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(field, f"is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    return value


def parse_at(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError("at", f"invalid ISO 8601 time {text!r}") from None
    if value.tzinfo is None:
        raise ValidationError("at", "needs a time zone offset, e.g. 2026-01-01T09:00:00+00:00")
    return value


@cli.command()
@click.argument("task", required=False)
@click.option("--args", "args_json", help="Task arguments as a JSON object.")
@click.option("--queue", default=None, help="Default: the task's declared queue (pgsched.registered_tasks).")
@click.option("--priority", type=int, default=None, help="Higher runs first (-1000..1000). Default: the task's.")
@click.option("--in", "delay", help="Run after a delay: 30s, 5m, 2h, 1d.")
@click.option("--at", "at", help="Run at an ISO 8601 time with offset.")
@click.option("--key", "run_key", help="Run key: at most one job per key over its scope (--key-scope).")
@click.option(
    "--key-scope",
    "run_key_scope",
    help="What the key is unique over: retention (default: while the job's row exists), active (while it is "
    "waiting, queued or running) or period (--key-period from the first enqueue).",
)
@click.option("--key-period", "run_key_period", help="Hold the key for this long: 30s, 5m, 2h, 1d (scope period).")
@click.option(
    "--on-conflict",
    "on_conflict",
    help="existing (default): print the job holding the key. replace: a holder not started yet takes these "
    "args and run time; a running one gives the key to a new job.",
)
@click.option("--max-attempts", type=int, default=None)
@click.option("--concurrency-key", help="Run at most --concurrency-limit jobs with this key at once.")
@click.option("--concurrency-limit", type=int, default=None, help="Limit of --concurrency-key (default 1).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--meta", "meta_json", help="Metadata as a JSON object.")
@click.option("--start-within", help="Deadline to start, from the run time: 30s, 5m, 2h, 1d; else it expires.")
@click.option("--allow-unknown", is_flag=True, help="Enqueue even if no worker has registered TASK (deploy order).")
@click.option(
    "--from-file",
    "from_file",
    type=click.File("r", encoding="utf-8"),
    help="Bulk enqueue: one JSON object per line with the POST /jobs keys ('-' reads stdin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_ctx
def enqueue(
    ctx: CliContext,
    task: str | None,
    args_json: str | None,
    queue: str | None,
    priority: int | None,
    delay: str | None,
    at: str | None,
    run_key: str | None,
    run_key_scope: str | None,
    run_key_period: str | None,
    on_conflict: str | None,
    max_attempts: int | None,
    concurrency_key: str | None,
    concurrency_limit: int | None,
    tags: tuple[str, ...],
    meta_json: str | None,
    start_within: str | None,
    allow_unknown: bool,
    from_file: TextIO | None,
    as_json: bool,
) -> None:
    """Enqueue a job of TASK and print its id, or many jobs with --from-file."""
    if from_file is not None:
        if task is not None:
            raise ValidationError("task", "give TASK or --from-file, not both")
        _enqueue_file(ctx, from_file, as_json, allow_unknown)
        return
    if task is None:
        raise ValidationError("task", "missing TASK (or give --from-file jobs.jsonl)")
    if delay and at:
        raise ValidationError("in", "give --in or --at, not both")
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "run_key": run_key,
        "run_key_scope": run_key_scope,
        "on_conflict": on_conflict,
        "max_attempts": max_attempts,
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "tags": list(tags),
        "meta": parse_args_json(meta_json, "meta"),
    }
    if run_key_period:
        options["run_key_period"] = parse_duration(run_key_period, "key-period")
    if start_within:
        options["start_within"] = parse_duration(start_within, "start-within")
    if delay:
        options["delay"] = parse_duration(delay, "in")
    if at:
        options["run_at"] = parse_at(at)
    ctx.database()
    client = Client(ctx.settings)
    try:
        job = client.build(task, parse_args_json(args_json), **options)
        if not allow_unknown:
            client.require_known_tasks([job.task], field="task")
        inserted = client.insert(job)
    finally:
        client.close()
    if as_json:
        echo_json({**inserted.job.to_dict(), "created": inserted.created})
    else:
        note = "" if inserted.created else " (run key held: existing job)"
        click.echo(f"{inserted.job.id}{note}")


def read_jobs_file(lines: Iterable[str], *, settings: Settings) -> list[NewJob]:
    """Every job of a .jsonl file, all validated before anything is written (errors name the line)."""
    clock = SystemClock()
    jobs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"line {number}", f"is not valid JSON: {exc.msg}") from None
        try:
            jobs.append(new_job_from_json(item, clock=clock, max_payload_bytes=settings.max_payload_bytes))
        except ValidationError as exc:
            raise ValidationError(f"line {number}: {exc.field}", exc.message) from None
    return jobs


def _enqueue_file(ctx: CliContext, source: TextIO, as_json: bool, allow_unknown: bool) -> None:
    jobs = read_jobs_file(source, settings=ctx.settings)
    ctx.database()
    client = Client(ctx.settings)
    ids: list[int] = []
    try:
        if not allow_unknown and jobs:
            client.require_known_tasks([j.task for j in jobs])
        with click.progressbar(length=len(jobs), label="enqueueing", file=sys.stderr) as bar:
            for start in range(0, len(jobs), BULK_CHUNK):
                chunk = jobs[start : start + BULK_CHUNK]
                ids.extend(client.insert_many(chunk))
                bar.update(len(chunk))
    finally:
        client.close()
    if as_json:
        echo_json({"ids": ids})
    else:
        click.echo(f"enqueued {len(ids)} job(s)")
