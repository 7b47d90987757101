"""``pgsched enqueue``: enqueue a job from the shell."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import click

from pgsched.cli.base import CliContext, cli, echo_json, pass_ctx
from pgsched.client import Client
from pgsched.errors import ValidationError

__all__ = ["enqueue", "parse_duration"]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str, field: str) -> timedelta:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d``, ``250ms``."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValidationError(field, f"invalid duration {text!r}: use e.g. 30s, 5m, 2h, 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_args_json(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("args", f"is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise ValidationError("args", "must be a JSON object")
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
@click.argument("task")
@click.option("--args", "args_json", help="Task arguments as a JSON object.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first (-1000..1000).")
@click.option("--in", "delay", help="Run after a delay: 30s, 5m, 2h, 1d.")
@click.option("--at", "at", help="Run at an ISO 8601 time with offset.")
@click.option("--key", "run_key", help="Run key: enqueue at most one job per key.")
@click.option("--max-attempts", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_ctx
def enqueue(
    ctx: CliContext,
    task: str,
    args_json: str | None,
    queue: str,
    priority: int,
    delay: str | None,
    at: str | None,
    run_key: str | None,
    max_attempts: int | None,
    as_json: bool,
) -> None:
    """Enqueue a job of TASK and print its id."""
    if delay and at:
        raise ValidationError("in", "give --in or --at, not both")
    options: dict[str, Any] = {"queue": queue, "priority": priority, "run_key": run_key, "max_attempts": max_attempts}
    if delay:
        options["delay"] = parse_duration(delay, "in")
    if at:
        options["run_at"] = parse_at(at)
    client = Client(ctx.settings)
    try:
        inserted = client.insert(client.build(task, parse_args_json(args_json), **options))
    finally:
        client.close()
    if as_json:
        echo_json({**inserted.job.to_dict(), "created": inserted.created})
    else:
        note = "" if inserted.created else " (run key already taken: existing job)"
        click.echo(f"{inserted.job.id}{note}")
