"""Mount the pgsched REST API and dashboard under a prefix of a Starlette or FastAPI application.

Interface layer: wiring only. Starlette does not run a mounted app's lifespan, so ``mount`` chains
the API's (it opens and closes the API's connection pool) into the parent's. Enqueueing inside a
request's transaction needs nothing from here: pass the request's psycopg connection as ``conn=``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from pgsched.api.app import create_app
from pgsched.config import Settings

__all__ = ["mount"]


def mount(parent: Starlette, settings: Settings, *, path: str = "/pgsched") -> Starlette:
    """Serve the API and the dashboard at ``path`` (dashboard: ``path + "/"``) of ``parent``; returns the API app.

    Call it before the parent starts. Authentication is the API's own (bearer tokens), whatever the parent's."""
    if not path.startswith("/") or path.endswith("/"):
        raise ValueError(f"path must start with / and not end with one, got {path!r}")
    api = create_app(settings)
    parent.mount(path, api)
    inner = parent.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with api.router.lifespan_context(api), inner(app) as state:
            yield state

    parent.router.lifespan_context = lifespan
    return api
