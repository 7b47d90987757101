"""Workflow endpoints: create a whole workflow in one POST, list, show with every step, cancel.

Interface layer: validates the body into jobs (the POST /jobs rules) and edges, then calls the
workflow store; the database releases the steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.errors import ApiError
from pgsched.api.state import ApiState, api_state
from pgsched.api.task_policy import authorize_task
from pgsched.api.validation import decode_cursor, encode_cursor, page_limit, parse_id, read_object
from pgsched.errors import ValidationError, WorkflowNotFound
from pgsched.job import NewJob
from pgsched.job_input import new_job_from_json
from pgsched.token_store import Scope
from pgsched.workflow import Edge, Node, Step

__all__ = ["KINDS", "MAX_STEPS", "STATES", "STEP_KEYS", "routes"]

MAX_STEPS = 10_000
KINDS = ("chain", "group", "dag", "batch")
STATES = ("running", "failed", "cancelled", "finished", "empty")
STEP_KEYS = frozenset({"key", "after", "on_failure", "receive"})
_BODY_KEYS = frozenset({"name", "kind", "steps"})


def _text(body: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...] | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > 200 or "\x00" in value:
        raise ValidationError(name, "must be a string of at most 200 characters")
    if choices is not None and value not in choices:
        raise ValidationError(name, f"must be one of {', '.join(choices)}")
    return value


def _after(item: Mapping[str, Any], index: int, keys: Mapping[str, int]) -> list[int]:
    after = item.get("after", [])
    if not isinstance(after, list):
        raise ValidationError("after", "must be an array of earlier steps (their index or key)")
    nodes = []
    for ref in after:
        node = keys.get(ref) if isinstance(ref, str) else ref
        if isinstance(node, bool) or not isinstance(ref, int | str):
            raise ValidationError("after", f"{ref!r} is not a step index or key")
        if not isinstance(node, int) or not 0 <= node < index:  # well-formed, but the graph does not hold it
            message = f"{str(ref)[:60]!r} is not an earlier step (an index below {index} or a key)"
            raise ApiError(409, "conflict", message, field="after")
        nodes.append(node)
    return nodes


def _step(state: ApiState, item: object, index: int, keys: dict[str, int]) -> tuple[NewJob, Node]:
    if not isinstance(item, Mapping):
        raise ValidationError("step", "must be an object")
    fields = {k: v for k, v in item.items() if k not in STEP_KEYS}
    if "run_key" in fields:
        raise ValidationError("run_key", "a workflow step takes no run key")
    for name, value in fields.items():
        if value is None:
            raise ValidationError(name, "must not be null (leave it out for the default)")
    job = new_job_from_json(fields, clock=state.clock, max_payload_bytes=state.settings.max_payload_bytes)
    step = Step(job.task, job.args)
    if "on_failure" in item:
        step = step.if_dependency_fails(item["on_failure"])
    if "receive" in item:
        step = step.receiving(item["receive"])
    edges = tuple(Edge(node, step.on_failure) for node in dict.fromkeys(_after(item, index, keys)))
    if "key" in item:
        key = item["key"]
        if not isinstance(key, str) or not 1 <= len(key) <= 200 or "\x00" in key:
            raise ValidationError("key", "must be a string of 1 to 200 characters")
        if key in keys:
            raise ApiError(409, "conflict", f"key {key[:60]!r} is taken by step {keys[key]}", field="key")
        keys[key] = index
    return job, Node(step, edges)


def _parse(state: ApiState, body: Mapping[str, Any]) -> tuple[str, str, list[NewJob], list[Node], dict[str, int]]:
    if set(body) - _BODY_KEYS:
        raise ValidationError(sorted(set(body) - _BODY_KEYS)[0], "unknown field (name, kind, steps)")
    name, kind = _text(body, "name", ""), _text(body, "kind", "dag", KINDS)
    items = body.get("steps")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_STEPS:
        raise ValidationError("steps", f"must be an array of 1 to {MAX_STEPS} step objects")
    jobs: list[NewJob] = []
    nodes: list[Node] = []
    keys: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            job, node = _step(state, item, index, keys)
        except ValidationError as exc:
            raise ValidationError(f"steps[{index}].{exc.field}", exc.message) from None
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, exc.message, field=f"steps[{index}].{exc.field}") from None
        jobs.append(job)
        nodes.append(node)
    return name, kind, jobs, nodes, keys


async def create_workflow(request: Request) -> Response:
    state = api_state(request)
    name, kind, jobs, nodes, keys = _parse(state, await read_object(request))
    await authorize_task(request, sorted({job.task for job in jobs}))
    started = await state.workflows.workflow_insert(name, kind, jobs, nodes)
    body = {"id": started.id, "job_ids": list(started.job_ids), "keys": {k: started[i] for k, i in keys.items()}}
    return JSONResponse(body, status_code=201)


async def list_workflows(request: Request) -> Response:
    state = api_state(request)
    settings = state.settings
    limit = page_limit(request, default=settings.api_page_size, maximum=settings.api_max_page_size)
    wanted = request.query_params.get("state")
    if wanted is not None and wanted not in STATES:
        raise ValidationError("state", f"must be one of {', '.join(STATES)}")
    before_id = decode_cursor(request)
    rows = await state.reads.read(
        lambda s: s.workflows.workflow_list(state=wanted, before_id=before_id, limit=limit + 1)
    )
    page = rows[:limit]
    cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return JSONResponse({"items": [w.to_dict() for w in page], "next_cursor": cursor})


async def get_workflow(request: Request) -> Response:
    state = api_state(request)
    workflow_id = parse_id(request.path_params["id"])
    info = await state.workflows.workflow_get(workflow_id)
    if info is None:
        raise WorkflowNotFound(workflow_id)
    steps = await state.workflows.workflow_steps_get(workflow_id)
    return JSONResponse({**info.to_dict(), "items": [s.to_dict() for s in steps]})


async def cancel_workflow(request: Request) -> Response:
    state = api_state(request)
    workflow_id = parse_id(request.path_params["id"])
    cancelled = await state.workflows.workflow_cancel(workflow_id)
    info = await state.workflows.workflow_get(workflow_id)
    if info is None:
        raise WorkflowNotFound(workflow_id)
    return JSONResponse({**info.to_dict(), "cancelled_steps": cancelled})


routes = [
    Route("/workflows", protected(Scope.WRITE)(create_workflow), methods=["POST"]),
    Route("/workflows", protected(Scope.READ)(list_workflows), methods=["GET"]),
    Route("/workflows/{id:int}", protected(Scope.READ)(get_workflow), methods=["GET"]),
    Route("/workflows/{id:int}/cancel", protected(Scope.WRITE)(cancel_workflow), methods=["POST"]),
]
