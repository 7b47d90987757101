"""Dead-letter endpoints: list dead jobs, retry them in bulk, purge them.

Interface layer: single-job retry and delete live under /jobs/{id}; these act on the whole
dead-letter queue (optionally one queue or task).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.jobs import job_page
from pgsched.api.state import api_state
from pgsched.api.task_policy import authorize_dead_retry
from pgsched.api.validation import read_object
from pgsched.errors import ValidationError
from pgsched.job import validate_queue, validate_task_name
from pgsched.job_input import parse_datetime
from pgsched.token_store import Scope

__all__ = ["routes"]


def _filters(body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(body) - allowed
    if unknown:
        raise ValidationError(sorted(unknown)[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {
        "queue": validate_queue(body["queue"]) if "queue" in body else None,
        "task": validate_task_name(body["task"]) if "task" in body else None,
    }
    if "before" in allowed:
        out["before"] = parse_datetime(body["before"], "before") if "before" in body else None
    return out


async def list_dead(request: Request) -> Response:
    return await job_page(request, state="dead")


async def retry_dead(request: Request) -> Response:
    state = api_state(request)
    filters = _filters(await read_object(request, optional=True), {"queue", "task"})
    await authorize_dead_retry(request, **filters)
    ids = await state.operator.dead_retry_many(**filters)
    return JSONResponse({"retried": len(ids), "ids": ids})


async def purge_dead(request: Request) -> Response:
    state = api_state(request)
    filters = _filters(await read_object(request, optional=True), {"queue", "task", "before"})
    return JSONResponse({"purged": await state.operator.dead_purge(**filters)})


routes = [
    Route("/dead", protected(Scope.READ)(list_dead), methods=["GET"]),
    Route("/dead/retry", protected(Scope.WRITE)(retry_dead), methods=["POST"]),
    Route("/dead/purge", protected(Scope.ADMIN)(purge_dead), methods=["POST"]),
]
