"""``pgsched dev``: everything in one process on an embedded PostgreSQL (or PGSCHED_DSN).

Starts the embedded server (data kept in ``--data-dir``), migrates, then runs a worker, the
leader candidate (cron, reaper, pruner) and the API with the dashboard in one asyncio loop.
Ctrl-C (or SIGTERM) stops them all gracefully and then the embedded server: exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pgsched import db
from pgsched.app import Pgsched
from pgsched.cli.base import CliContext, cli, pass_ctx
from pgsched.cli.preflight import check_port_free
from pgsched.cli.worker import load_app
from pgsched.config import Settings
from pgsched.embedded import EmbeddedPostgres
from pgsched.migrate import Migrator
from pgsched.schedule_store import ScheduleSpec, ScheduleStore
from pgsched.scheduler import Scheduler
from pgsched.service import Service, run_services
from pgsched.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from pgsched.api.serve import ServiceServer

__all__ = ["dev"]

log = logging.getLogger(__name__)

DEMO_APP = "pgsched.examples.demo:app"
DEMO_SCHEDULE = ScheduleSpec.build("demo-tick", "*/30 * * * * *", "tick")


def _token(data_dir: Path, settings: Settings) -> str:
    """The admin token: PGSCHED_API_TOKEN if set, else one kept in the data dir across restarts."""
    if settings.api_token:
        return settings.api_token
    path = data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


async def _create_demo_schedule(settings: Settings) -> None:
    pool = db.async_pool(settings.require_dsn(), "cli", min_size=1, max_size=1)
    await pool.open()
    try:
        await ScheduleStore(pool).schedule_upsert(DEMO_SCHEDULE)
    finally:
        await pool.close()


def _write_env_file(data_dir: Path, settings: Settings, token: str) -> Path:
    """``source`` it to get the names the README's tour uses: PGSCHED_DSN, PGSCHED_API_TOKEN, pgsched on PATH."""
    path = data_dir / "env"
    bin_dir = Path(sys.executable).parent
    path.write_text(
        f"export PGSCHED_DSN={shlex.quote(settings.require_dsn())}\n"
        f"export PGSCHED_API_TOKEN={shlex.quote(token)}\n"
        f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"\n'
    )
    path.chmod(0o600)
    return path


def _banner(settings: Settings, host: str, port: int, token: str, env_file: Path, app_ref: str) -> str:
    url = f"http://{host}:{port}"
    lines = [
        "",
        "pgsched dev is running. Ctrl-C stops everything.",
        f"  dashboard   {url}/",
        f"  API         {url}/jobs   (OpenAPI: {url}/openapi.json)",
        f"  token       {token}",
        f"  try         curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\",
        f'                   -d \'{{"task": "hello", "args": {{"name": "curl"}}}}\' {url}/jobs',
        f"  database    psql '{settings.dsn}'",
        f"  app         {app_ref}",
        f"  data dir    {env_file.parent}",
        "",
        "In another terminal, for the README's tour (PGSCHED_DSN, PGSCHED_API_TOKEN, pgsched on PATH):",
        f"  source {env_file}",
    ]
    return "\n".join(lines) + "\n"


class _Announcer:
    """Prints the banner once the API accepts connections, so what it promises already works."""

    def __init__(self, api: ServiceServer, banner: str) -> None:
        self._api = api
        self._banner = banner
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._api.started and not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._stop.wait()
        if self._api.started:
            click.echo(self._banner)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".pgsched-dev"), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the API and dashboard.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port of the API and dashboard.")
@click.option("--app", "app_ref", default=None, help=f"Your application as MODULE:APP (default: the demo, {DEMO_APP}).")
@click.option("--queues", default="default", show_default=True, help="Comma-separated queues the worker claims from.")
@click.option("--concurrency", type=int, default=10, show_default=True)
@pass_ctx
def dev(
    ctx: CliContext, data_dir: Path, host: str, port: int, app_ref: str | None, queues: str, concurrency: int
) -> None:
    """Run PostgreSQL (embedded unless PGSCHED_DSN is set), a worker, the scheduler and the API in one command."""
    check_port_free(host, port)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedPostgres | None = None
    settings = ctx.settings
    if not settings.dsn:
        click.echo(f"starting the embedded PostgreSQL in {data_dir / 'pg'} ...")
        embedded = EmbeddedPostgres(data_dir / "pg")
        settings = settings.with_(dsn=embedded.start())
    try:
        Migrator(settings.require_dsn()).migrate()
        settings = settings.with_(api_token=_token(data_dir, settings))
        app = load_app(app_ref or DEMO_APP).with_settings(settings)
        if app_ref is None:
            asyncio.run(_create_demo_schedule(settings))
        token = settings.api_token or ""
        env_file = _write_env_file(data_dir, settings, token)
        banner = _banner(settings, host, port, token, env_file, app_ref or DEMO_APP)
        asyncio.run(_run_all(app, settings, banner, host=host, port=port, queues=queues, concurrency=concurrency))
    finally:
        if embedded is not None:
            click.echo("stopping the embedded PostgreSQL ...")
            embedded.stop()
    click.echo("stopped.")


async def _run_all(
    app: Pgsched, settings: Settings, banner: str, *, host: str, port: int, queues: str, concurrency: int
) -> None:
    config = WorkerConfig(queues=tuple(q.strip() for q in queues.split(",") if q.strip()), concurrency=concurrency)
    worker = Worker(app.tasks, settings, config)
    from pgsched.api.serve import ServiceServer, uvicorn_config  # here: every other command starts without the API

    api = ServiceServer(uvicorn_config(settings, host=host, port=port, log_level="warning"))
    scheduler = Scheduler(settings, worker_id=lambda: worker.worker_id)
    services: list[Service] = [worker, scheduler, api, _Announcer(api, banner)]
    await run_services(services, grace=config.grace_seconds)
    await app.aclose()
