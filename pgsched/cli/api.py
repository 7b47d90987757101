"""``pgsched api``: serve the REST API with uvicorn (refuses a non-loopback address with auth off)."""

from __future__ import annotations

import click

from pgsched.cli.base import CliContext, cli, pass_ctx
from pgsched.cli.preflight import check_port_free

__all__ = ["api"]


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_ctx
def api(ctx: CliContext, host: str, port: int) -> None:
    """Serve the REST API, /metrics, /health and /openapi.json."""
    from pgsched.api import serve  # here: every other command starts without the API (~0.1 s of CPU)

    ctx.database()
    check_port_free(host, port)
    serve(ctx.settings, host=host, port=port)
