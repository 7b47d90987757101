"""Job endpoints: create (one or a batch), list (keyset pages), show, change, cancel, retry, delete.

Interface layer: validates input through ``new_job_from_mapping`` and the checks of
``pgsched.api.validation``, then calls the job store; returns ``Job.to_dict()`` shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import ApiState, api_state
from pgsched.api.task_policy import authorize_task
from pgsched.api.validation import decode_cursor, encode_cursor, page_limit, parse_id, query_filters, read_object
from pgsched.errors import InvalidStateError, JobNotFound, ValidationError
from pgsched.job import PRIORITY_MAX, PRIORITY_MIN, NewJob, validate_args, validate_queue
from pgsched.job_input import new_job_from_json, parse_datetime
from pgsched.job_row import Job
from pgsched.operator_store import JobChanges
from pgsched.token_store import Scope

__all__ = ["MAX_BATCH", "job_page", "routes"]

MAX_BATCH = 1000
_PATCH_KEYS = ("run_at", "priority", "args", "queue")


_OVERRIDE = "allow_unknown_task"


def _new_job(state: ApiState, item: object) -> NewJob:
    if isinstance(item, Mapping):
        for key, value in item.items():
            if value is None:
                raise ValidationError(key, "must not be null (leave it out for the default)")
    return new_job_from_json(item, clock=state.clock, max_payload_bytes=state.settings.max_payload_bytes)


def _allow_unknown(body: dict[str, Any]) -> bool:
    """Pop the deploy-order override: enqueue a task no worker has registered yet."""
    allow = body.pop(_OVERRIDE, False)
    if not isinstance(allow, bool):
        raise ValidationError(_OVERRIDE, "must be true or false")
    return allow


async def _require_served(state: ApiState, tasks: list[str], allow: bool, *, batch: bool = False) -> None:
    """422 naming the task field (with close names) unless a live worker serves every task, or ``allow``."""
    unserved = None if allow else await state.tasks.task_names_unserved(tasks)
    if unserved is not None:
        field = f"jobs[{tasks.index(unserved.missing[0])}].task" if batch else "task"
        raise unserved.error(override=f'set "{_OVERRIDE}": true', field_name=field)


async def create_job(request: Request) -> Response:
    state = api_state(request)
    body = await read_object(request)
    allow = _allow_unknown(body)
    job = _new_job(state, body)
    await authorize_task(request, job.task)
    await _require_served(state, [job.task], allow)
    if state.tracer is None:
        inserted = await state.jobs.job_insert(job)
    else:  # the enqueue span continues the caller's trace (traceparent), and the job carries it on
        with state.tracer.enqueue([job], parent=request.headers) as span:
            inserted = await state.jobs.job_insert(span.jobs[0])
            span.inserted([inserted.job.id])
    return JSONResponse(inserted.job.to_dict(), status_code=201 if inserted.created else 200)


async def create_batch(request: Request) -> Response:
    state = api_state(request)
    body = await read_object(request)
    allow = _allow_unknown(body)
    items = body.get("jobs")
    if set(body) - {"jobs"}:
        raise ValidationError(sorted(set(body) - {"jobs"})[0], "unknown field")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise ValidationError("jobs", f"must be an array of 1 to {MAX_BATCH} job objects")
    jobs = []
    for index, item in enumerate(items):
        try:
            jobs.append(_new_job(state, item))
        except ValidationError as exc:
            raise ValidationError(f"jobs[{index}].{exc.field}", exc.message) from None
    await authorize_task(request, [job.task for job in jobs])
    await _require_served(state, [job.task for job in jobs], allow, batch=True)
    if state.tracer is None:
        ids = await state.jobs.job_insert_many(jobs)
    else:
        with state.tracer.enqueue(jobs, parent=request.headers) as span:
            ids = await state.jobs.job_insert_many(span.jobs)
            span.inserted(ids)
    return JSONResponse({"ids": ids}, status_code=201)


async def job_page(request: Request, **fixed: Any) -> Response:
    """One keyset page of jobs, newest first: ``{"items": [...], "next_cursor": str | null}``."""
    state = api_state(request)
    settings = state.settings
    limit = page_limit(request, default=settings.api_page_size, maximum=settings.api_max_page_size)
    filters = {**query_filters(request, with_state="state" not in fixed), **fixed}
    before_id = decode_cursor(request)
    rows = await state.reads.read(lambda s: s.operator.job_list(before_id=before_id, limit=limit + 1, **filters))
    page = rows[:limit]
    cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return JSONResponse({"items": [j.to_dict() for j in page], "next_cursor": cursor})


async def list_jobs(request: Request) -> Response:
    return await job_page(request)


async def _job_or_404(state: ApiState, job_id: int) -> Job:
    job = await state.jobs.job_get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def get_job(request: Request) -> Response:
    state = api_state(request)
    job = await _job_or_404(state, parse_id(request.path_params["id"]))
    return JSONResponse(job.to_dict())


def _changes(body: Mapping[str, Any], max_payload_bytes: int) -> JobChanges:
    unknown = set(body) - set(_PATCH_KEYS)
    if unknown:
        raise ValidationError(sorted(unknown)[0], "unknown field (run_at, priority, args, queue may change)")
    if not body:
        raise ValidationError("body", "give at least one of run_at, priority, args, queue")
    for key in _PATCH_KEYS:
        if key in body and body[key] is None:
            raise ValidationError(key, "must not be null")
    priority = body.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise ValidationError("priority", f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}")
    return JobChanges(
        run_at=parse_datetime(body["run_at"], "run_at") if "run_at" in body else None,
        priority=priority,
        args=validate_args(body["args"], max_bytes=max_payload_bytes) if "args" in body else None,
        queue=validate_queue(body["queue"]) if "queue" in body else None,
    )


async def update_job(request: Request) -> Response:
    state = api_state(request)
    job_id = parse_id(request.path_params["id"])
    changes = _changes(await read_object(request), state.settings.max_payload_bytes)
    await authorize_task(request, (await _job_or_404(state, job_id)).task)
    job = await state.operator.job_update(job_id, changes)
    return JSONResponse(job.to_dict())


async def cancel_job(request: Request) -> Response:
    state = api_state(request)
    job_id = parse_id(request.path_params["id"])
    await state.operator.job_cancel(job_id)
    return JSONResponse((await _job_or_404(state, job_id)).to_dict())


async def retry_job(request: Request) -> Response:
    state = api_state(request)
    job_id = parse_id(request.path_params["id"])
    await authorize_task(request, (await _job_or_404(state, job_id)).task)
    await state.operator.job_retry(job_id)
    return JSONResponse((await _job_or_404(state, job_id)).to_dict())


async def delete_job(request: Request) -> Response:
    state = api_state(request)
    job_id = parse_id(request.path_params["id"])
    if await state.jobs.job_delete(job_id):
        return Response(status_code=204)
    job = await _job_or_404(state, job_id)
    raise InvalidStateError(f"job {job_id} is {job.state}; only a finished job can be deleted (cancel it first)")


routes = [
    Route("/jobs", protected(Scope.WRITE)(create_job), methods=["POST"]),
    Route("/jobs", protected(Scope.READ)(list_jobs), methods=["GET"]),
    Route("/jobs/batch", protected(Scope.WRITE)(create_batch), methods=["POST"]),
    Route("/jobs/{id:int}", protected(Scope.READ)(get_job), methods=["GET"]),
    Route("/jobs/{id:int}", protected(Scope.WRITE)(update_job), methods=["PATCH"]),
    Route("/jobs/{id:int}", protected(Scope.WRITE)(delete_job), methods=["DELETE"]),
    Route("/jobs/{id:int}/cancel", protected(Scope.WRITE)(cancel_job), methods=["POST"]),
    Route("/jobs/{id:int}/retry", protected(Scope.WRITE)(retry_job), methods=["POST"]),
]
