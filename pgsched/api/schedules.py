"""Schedule endpoints: create or replace, list, show, change, delete, trigger now, run history, preview.

Interface layer over ``ScheduleStore`` (``pgsched.schedule_store``) and ``pgsched.cron``: a bad
cron expression or an unknown time zone is a 422 naming the field, never a 500.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import api_state
from pgsched.api.task_policy import authorize_task
from pgsched.api.validation import (
    decode_cursor,
    decode_name_cursor,
    encode_cursor,
    page_limit,
    parse_schedule_name,
    read_object,
)
from pgsched.cron import parse_cron
from pgsched.errors import ValidationError
from pgsched.job_input import MIN_GRACE_SECONDS, parse_seconds
from pgsched.schedule_store import Schedule, ScheduleSpec
from pgsched.token_store import Scope

__all__ = ["routes"]

_FIELDS = frozenset(
    {
        "name",
        "cron",
        "task",
        "args",
        "timezone",
        "queue",
        "priority",
        "max_attempts",
        "enabled",
        "misfire_policy",
        "misfire_grace_seconds",
    }
)
MAX_PREVIEW = 100


def _spec(body: dict[str, Any]) -> ScheduleSpec:
    unknown = set(body) - _FIELDS
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field")
    for required in ("name", "cron", "task"):
        if required not in body:
            raise ValidationError(required, "is required")
    if not isinstance(body.get("misfire_policy", "once"), str | None):
        raise ValidationError("misfire_policy", "must be one of skip, once, catch_up")
    grace = body.get("misfire_grace_seconds")
    if grace is not None:
        parse_seconds(grace, "misfire_grace_seconds", minimum=MIN_GRACE_SECONDS, maximum=366 * 86400)
    options = {k: v for k, v in body.items() if k not in {"name", "cron", "task", "args"} and v is not None}
    return ScheduleSpec.build(body["name"], body["cron"], body["task"], body.get("args"), **options)


def _as_body(schedule: Schedule) -> dict[str, Any]:
    data = schedule.to_dict()
    return {k: data[k] for k in _FIELDS}


async def create_schedule(request: Request) -> Response:
    spec = _spec(await read_object(request))
    await authorize_task(request, spec.task)
    schedule, created = await api_state(request).schedules.schedule_upsert(spec)
    return JSONResponse(schedule.to_dict(), status_code=201 if created else 200)


async def list_schedules(request: Request) -> Response:
    state = api_state(request)
    settings = state.settings
    limit = page_limit(request, default=settings.api_page_size, maximum=settings.api_max_page_size)
    after = decode_name_cursor(request)
    rows = await state.reads.read(lambda s: s.schedules.schedule_list(after=after, limit=limit + 1))
    page = rows[:limit]
    cursor = encode_cursor(page[-1].name) if len(rows) > limit else None
    return JSONResponse({"items": [s.to_dict() for s in page], "next_cursor": cursor})


async def get_schedule(request: Request) -> Response:
    name = parse_schedule_name(request.path_params["name"])
    return JSONResponse((await api_state(request).schedules.schedule_get(name)).to_dict())


async def update_schedule(request: Request) -> Response:
    state = api_state(request)
    name = parse_schedule_name(request.path_params["name"])
    body = await read_object(request)
    if "name" in body and body["name"] != name:
        raise ValidationError("name", "cannot be changed (create a new schedule and delete this one)")
    if not body:
        raise ValidationError("body", "give at least one field to change")
    current = await state.schedules.schedule_get(name)
    spec = _spec({**_as_body(current), **body})
    await authorize_task(request, spec.task)
    schedule, _ = await state.schedules.schedule_upsert(spec)
    return JSONResponse(schedule.to_dict())


async def delete_schedule(request: Request) -> Response:
    await api_state(request).schedules.schedule_delete(parse_schedule_name(request.path_params["name"]))
    return Response(status_code=204)


async def trigger_schedule(request: Request) -> Response:
    name = parse_schedule_name(request.path_params["name"])
    await authorize_task(request, (await api_state(request).schedules.schedule_get(name)).task)
    job = await api_state(request).schedules.schedule_trigger(name)
    return JSONResponse(job.to_dict(), status_code=201)


async def schedule_runs(request: Request) -> Response:
    state = api_state(request)
    name = parse_schedule_name(request.path_params["name"])
    settings = state.settings
    limit = page_limit(request, default=settings.api_page_size, maximum=settings.api_max_page_size)
    before_id = decode_cursor(request)
    rows = await state.reads.read(lambda s: s.schedules.schedule_runs(name, before_id=before_id, limit=limit + 1))
    page = rows[:limit]
    cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return JSONResponse({"items": [j.to_dict() for j in page], "next_cursor": cursor})


async def preview(request: Request) -> Response:
    """The next fire instants of a cron expression, without storing anything."""
    body = await read_object(request)
    unknown = set(body) - {"cron", "timezone", "count"}
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field (cron, timezone, count)")
    count = body.get("count", 5)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PREVIEW:
        raise ValidationError("count", f"must be an integer from 1 to {MAX_PREVIEW}")
    spec = parse_cron(body.get("cron"), body.get("timezone", "UTC"))
    fires = spec.preview(api_state(request).clock.now(), count)
    return JSONResponse({"cron": spec.expression, "timezone": str(spec.zone), "fires": [f.isoformat() for f in fires]})


routes = [
    Route("/schedules", protected(Scope.WRITE)(create_schedule), methods=["POST"]),
    Route("/schedules", protected(Scope.READ)(list_schedules), methods=["GET"]),
    Route("/schedules/preview", protected(Scope.READ)(preview), methods=["POST"]),
    Route("/schedules/{name}", protected(Scope.READ)(get_schedule), methods=["GET"]),
    Route("/schedules/{name}", protected(Scope.WRITE)(update_schedule), methods=["PATCH"]),
    Route("/schedules/{name}", protected(Scope.WRITE)(delete_schedule), methods=["DELETE"]),
    Route("/schedules/{name}/trigger", protected(Scope.WRITE)(trigger_schedule), methods=["POST"]),
    Route("/schedules/{name}/runs", protected(Scope.READ)(schedule_runs), methods=["GET"]),
]
