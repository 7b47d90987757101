"""The dashboard: one static page and one script that read the JSON API (no build step, no templates).

Interface layer. It serves files only; every number it shows comes from the REST API with the
user's bearer token (kept in localStorage until "Forget token"). Its own reads and bulk actions live
in ``pgsched.api.dashboard.api`` under /dashboard/api/, routed before the static files. A strict
Content-Security-Policy forbids inline script, and the script renders data with textContent only,
so job args can never run as code.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgsched.api.dashboard import api

__all__ = ["routes"]

_STATIC = Path(__file__).resolve().parent / "static"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def index(request: Request) -> Response:
    return FileResponse(
        _STATIC / "index.html",
        headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


routes = [
    *api.routes,
    Route("/", index, methods=["GET"]),
    Mount("/dashboard", StaticFiles(directory=_STATIC), name="dashboard"),
]
