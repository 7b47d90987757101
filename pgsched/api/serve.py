"""``serve``: run the API under uvicorn until interrupted (what ``pgsched api`` runs).

Interface layer. Checks the bind address first, so a misconfigured public API never starts.
"""

from __future__ import annotations

import uvicorn

from pgsched.api.app import check_bind, create_app
from pgsched.config import Settings

__all__ = ["serve", "uvicorn_config"]


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
    )


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    settings.require_dsn()
    uvicorn.Server(uvicorn_config(settings, host=host, port=port, log_level=log_level)).run()
