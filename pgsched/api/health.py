"""``/health``: database, leader and listener (live workers). 503 with Retry-After while the
database is unreachable; the pool reconnects on its own, so the answer recovers by itself.

Interface layer; open without a token unless ``Settings.api_public_health`` is off.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import authorize
from pgsched.api.errors import RETRY_AFTER_SECONDS
from pgsched.api.state import api_state
from pgsched.errors import DatabaseUnavailable
from pgsched.token_store import Scope

__all__ = ["routes"]


async def health(request: Request) -> Response:
    state = api_state(request)
    if not state.settings.api_public_health:
        await authorize(request, Scope.READ)
    try:
        report = await state.admin.health_check()
    except DatabaseUnavailable:
        body = {"status": "unavailable", "database": False, "leader": None, "listener": None, "workers_alive": None}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    listener = report.workers_alive > 0
    status = "ok" if report.leader and listener else "degraded"
    body = {
        "status": status,
        "database": True,
        "leader": report.leader,
        "listener": listener,
        "workers_alive": report.workers_alive,
        "dedupe_cache": await asyncio.to_thread(state.cache.status),
    }
    return JSONResponse(body)


routes = [
    Route("/health", health, methods=["GET"]),
]
