"""Retention endpoints: ``GET /retention`` (read scope), ``PUT`` and ``DELETE /retention/{queue}/{state}`` (admin).

Interface layer over ``RetentionStore``. Reads go to the primary, not the read replica: the table is a few rows,
and an operator reads back what they just set. A change applies to jobs that finish afterwards. ``PUT`` answers
with a ``warning`` when the retention needs more time partitions ahead than the leader keeps (see
``pgsched.retention.HISTORY_MAX_AHEAD``); queue ``*`` (the defaults, from the leader's settings) is refused.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.errors import ApiError
from pgsched.api.state import api_state
from pgsched.api.validation import read_object
from pgsched.errors import ValidationError
from pgsched.retention import DEFAULTS_QUEUE, validate_retention_queue
from pgsched.token_store import Scope

__all__ = ["routes"]


async def list_retention(request: Request) -> Response:
    queue = request.query_params.get("queue")
    if queue is not None and queue != DEFAULTS_QUEUE:
        try:
            validate_retention_queue(queue)
        except ValidationError as exc:
            raise ApiError(400, "invalid_parameter", exc.message, field="queue") from None
    rules = await api_state(request).retention.retention_list(queue)
    return JSONResponse({"items": [r.to_dict() for r in rules]})


async def set_retention(request: Request) -> Response:
    body = await read_object(request)
    unknown = sorted(set(body) - {"keep_seconds"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field (keep_seconds)")
    if "keep_seconds" not in body:
        raise ValidationError("keep_seconds", "is required")
    state = api_state(request)
    rule = await state.retention.retention_set(
        request.path_params["queue"], request.path_params["state"], body["keep_seconds"]
    )
    horizon = await state.retention.history_horizon_get()
    width = horizon.width_seconds or state.settings.history_partition_seconds
    return JSONResponse({**rule.to_dict(), "warning": horizon.warning(rule.keep_seconds, width)})


async def unset_retention(request: Request) -> Response:
    await api_state(request).retention.retention_unset(request.path_params["queue"], request.path_params["state"])
    return Response(status_code=204)


routes = [
    Route("/retention", protected(Scope.READ)(list_retention), methods=["GET"]),
    Route("/retention/{queue}/{state}", protected(Scope.ADMIN)(set_retention), methods=["PUT"]),
    Route("/retention/{queue}/{state}", protected(Scope.ADMIN)(unset_retention), methods=["DELETE"]),
]
