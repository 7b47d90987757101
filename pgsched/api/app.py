"""The Starlette application: ``create_app(settings)`` returns an app whose lifespan opens and
closes its own connection pool, so it runs alone (``pgsched api``) or inside ``pgsched dev``.

Interface layer wiring: routes, middleware and error handlers; no SQL. ``check_bind`` refuses a
non-loopback address while authentication is off.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from pgsched.api import (
    cluster,
    dashboard,
    dead,
    health,
    jobs,
    metrics,
    openapi,
    retention,
    schedules,
    tokens,
    workflows,
)
from pgsched.api.deadlines import BodyDeadlineMiddleware
from pgsched.api.errors import exception_handlers
from pgsched.api.routing import merge_routes
from pgsched.api.state import ApiState
from pgsched.api.validation import BodyLimitMiddleware
from pgsched.clock import Clock
from pgsched.config import Settings
from pgsched.errors import ConfigurationError

__all__ = ["check_bind", "create_app", "is_loopback"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host in {"localhost", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to serve on a non-loopback address without authentication."""
    if not settings.api_auth_enabled and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve the API on {host} with authentication off (PGSCHED_API_AUTH=off): "
            "bind to 127.0.0.1 or turn authentication on"
        )


def create_app(settings: Settings, *, clock: Clock | None = None) -> Starlette:
    """A ready-to-serve ASGI app; its lifespan opens the pool (without waiting for the database)."""
    state = ApiState.build(settings, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.pool.open(wait=False)
        if state.read_pool is not None:
            await state.read_pool.open(wait=False)
        log.info("api started", extra={"event": "api_started", "auth": settings.api_auth_enabled})
        try:
            yield
        finally:
            await state.pool.close()
            if state.read_pool is not None:
                await state.read_pool.close()
            await state.cache.aclose()
            log.info("api stopped", extra={"event": "api_stopped"})

    routes = [
        *dashboard.routes,  # GET / is the dashboard (before health's plain placeholder)
        *health.routes,
        *metrics.routes,
        *openapi.routes,
        *jobs.routes,
        *dead.routes,
        *schedules.routes,
        *cluster.routes,
        *tokens.routes,
        *retention.routes,
        *workflows.routes,
    ]
    app = Starlette(
        routes=merge_routes(routes, query_parameters=openapi.query_parameters(settings)),
        middleware=[
            Middleware(BodyDeadlineMiddleware, body_timeout=settings.api_body_timeout_seconds),
            Middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.pgsched = state
    return app
