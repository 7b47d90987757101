"""The root click group, its shared options, output helpers and the error-to-exit-code mapping.

Exit codes: 0 ok, 1 failure, 2 usage or bad input (one clear line on stderr).
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
import psycopg

from pgsched import db
from pgsched.cli.preflight import check_dsn_syntax, require_schema
from pgsched.config import Settings
from pgsched.errors import (
    ConfigurationError,
    InvalidStateError,
    JobNotFound,
    PgschedError,
    ScheduleNotFound,
    TaskNotFound,
    ValidationError,
    WorkflowNotFound,
)
from pgsched.logs import LOG_FORMATS, configure_logging
from pgsched.service import traceback_logged

__all__ = ["CliContext", "cli", "echo_json", "echo_table", "pass_ctx", "run_cli"]

_BAD_INPUT = (
    ValidationError,
    JobNotFound,
    ScheduleNotFound,
    TaskNotFound,
    WorkflowNotFound,
    InvalidStateError,
    ConfigurationError,
)


@dataclass
class CliContext:
    settings: Settings

    def dsn(self) -> str:
        return self.settings.require_dsn()

    def database(self) -> str:
        """The DSN of a reachable, migrated database (one clear error otherwise)."""
        dsn = self.settings.require_dsn()
        require_schema(dsn)
        return dsn


pass_ctx = click.make_pass_decorator(CliContext)

# Each subcommand by the sibling module that registers it on ``cli``. A module is imported when its command runs (or
# ``--help`` lists them all), so ``pgsched worker`` does not load the API, the dashboard, the bench or the embedded
# server's code: a cold worker process starts in about half the CPU time. tests/cli/test_lazy_commands.py checks
# that this map names every registered command.
COMMAND_MODULES = {
    "api": "api",
    "bench": "bench",
    "dead": "admin",
    "dev": "dev",
    "doctor": "doctor",
    "enqueue": "jobs",
    "jobs": "admin",
    "migrate": "migrate",
    "queues": "admin",
    "retention": "retention",
    "scheduler": "scheduler",
    "schedules": "scheduler",
    "tokens": "tokens",
    "worker": "worker",
    "workers": "admin",
    "workflows": "workflows",
}


class _LazyGroup(click.Group):
    """The root group: a subcommand's module is imported on first use (see ``COMMAND_MODULES``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"pgsched.cli.{module}")  # registers its commands on ``cli``
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", envvar="PGSCHED_DSN", help="PostgreSQL connection string (env PGSCHED_DSN).")
@click.option(
    "--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"])
)
@click.option(
    "--log-format",
    envvar="PGSCHED_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(LOG_FORMATS),
    help="text: key=value after the message; json: one JSON object per line (env PGSCHED_LOG_FORMAT).",
)
@click.version_option(package_name="pgsched")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, log_level: str, log_format: str) -> None:
    """pgsched: a job queue and cron scheduler coordinated only by PostgreSQL."""
    configure_logging(log_level, log_format)
    if dsn:
        check_dsn_syntax(dsn)
    ctx.obj = CliContext(Settings.from_env(dsn=dsn))
    db.set_prepared_statements(ctx.obj.settings.prepared_statements)


def run_cli(group: click.Group, argv: Sequence[str]) -> int:
    """Run the CLI and map errors to exit codes with a single line on stderr (never a traceback)."""
    if not argv:
        with click.Context(group, info_name="pgsched") as ctx:
            click.echo(group.get_help(ctx))
        return 2
    try:
        result = _invoke(group, argv)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    except _BAD_INPUT as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    except PgschedError as exc:
        click.echo(f"Error: {_first_line(exc)}", err=True)
        return 1
    except psycopg.Error as exc:
        click.echo(f"Error: PostgreSQL: {_first_line(exc)}", err=True)
        return 1
    except Exception as exc:  # the last resort: one line; the traceback only when asked for
        if logging.getLogger().isEnabledFor(logging.DEBUG) and not traceback_logged(exc):
            traceback.print_exc()
        click.echo(f"Error: {type(exc).__name__}: {_first_line(exc)} (--log-level DEBUG shows more)", err=True)
        return 1
    return result if isinstance(result, int) else 0


def _invoke(group: click.Group, argv: Sequence[str]) -> Any:
    """Run the command; an error out of a task group (a service of ``pgsched worker``, say) is answered as its first
    error, so a PgschedError from a service gets its own one line rather than "unhandled errors in a TaskGroup"."""
    try:
        return group.main(args=list(argv), prog_name="pgsched", standalone_mode=False)
    except BaseExceptionGroup as exc:
        first: BaseException = exc
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]
        raise first from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def echo_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, empty: str = "(none)") -> None:
    """A plain aligned table for people; scripts use --json."""
    if not rows:
        click.echo(empty)
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


JsonOption = Callable[[Callable[..., Any]], Callable[..., Any]]
json_option: JsonOption = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
