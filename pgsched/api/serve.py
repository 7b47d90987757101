"""``serve``: run the API under uvicorn until interrupted (what ``pgsched api`` runs).

Interface layer. Checks the bind address first, so a misconfigured public API never starts. Slow or
hostile clients are bounded here: a header read deadline, an idle keep-alive limit, a header size
cap and a cap on open connections (beyond it uvicorn answers 503); the body deadline is middleware.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

from pgsched.api.app import check_bind, create_app
from pgsched.api.deadlines import header_deadline_protocol
from pgsched.config import Settings

__all__ = ["KEEP_ALIVE_SECONDS", "MAX_HEADER_BYTES", "ServiceServer", "serve", "uvicorn_config"]

# Idle keep-alive connections close after this; request line plus headers may not exceed this.
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024


def uvicorn_config(settings: Settings, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """A uvicorn config for the API; ``pgsched dev`` uses it to serve next to the worker."""
    check_bind(host, settings)
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=False,
        proxy_headers=False,
        server_header=False,
        http=header_deadline_protocol(settings.api_header_timeout_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        limit_concurrency=settings.api_max_connections,
    )


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    settings.require_dsn()
    uvicorn.Server(uvicorn_config(settings, host=host, port=port, log_level=log_level)).run()


class ServiceServer(uvicorn.Server):
    """uvicorn as one service among others (``pgsched dev``): the shared signal handling stops it, not its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True

    async def run(self) -> None:  # type: ignore[override]
        await self.serve()
