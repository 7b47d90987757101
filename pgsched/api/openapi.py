"""The OpenAPI 3 document at ``/openapi.json``, hand-written to match what the endpoints accept and return:
its paths, and the document assembled from them and the component schemas of ``openapi_schemas``.

Interface layer; data only. Limits (page size, batch size, priority range) come from the same
constants and Settings the handlers use, so the document cannot drift from them silently.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import authorize
from pgsched.api.dashboard.api import BULK_MAX, WINDOWS
from pgsched.api.openapi_retention import retention_paths, retention_schemas
from pgsched.api.openapi_schemas import (
    QUEUE,
    SCHEDULE_NAME,
    STR,
    TAGS,
    TASK,
    cluster_schemas,
    job_schemas,
    object_schema,
    ref,
    schedule_schemas,
)
from pgsched.api.openapi_workflows import workflow_schemas
from pgsched.api.state import api_state
from pgsched.api.validation import BIGINT_MAX, JOB_CURSOR_RE
from pgsched.api.workflows import STATES as WORKFLOW_STATES
from pgsched.config import Settings
from pgsched.dashboard_store import VIEWS as DASHBOARD_VIEWS
from pgsched.job import TAGS_MAX
from pgsched.job_row import JobState
from pgsched.token_store import Scope

__all__ = ["openapi_document", "query_parameters", "routes"]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": "Malformed JSON or a bad query parameter.",
    "401": "Missing, invalid or revoked token.",
    "403": "The token's scope is too low.",
    "404": "No such resource.",
    "409": "The resource is not in a state that allows this.",
    "413": "The request body is over the size limit.",
    "422": "A field is invalid; error.field names it.",
    "503": "The database is unreachable; retry after Retry-After seconds.",
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
    errors: tuple[str, ...] = ("400", "401", "403", "404", "409", "413", "422", "503"),
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(ok)}
    for code in errors:
        op["responses"][code] = {"description": _ERRORS[code], **_json(ref("Error"))}
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(ref(body))}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _ok(code: str, schema: str, description: str = "OK") -> dict[str, Any]:
    return {code: {"description": description, **_json(ref(schema))}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paging(settings: Settings, *, by_name: bool = False) -> list[dict[str, Any]]:
    cursor = SCHEDULE_NAME if by_name else JOB_CURSOR_RE.pattern
    return [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": settings.api_max_page_size}, "Page size."),
        _query("cursor", {"type": "string", "pattern": cursor}, "next_cursor of the previous page."),
    ]


_JOB_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": BIGINT_MAX},
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": SCHEDULE_NAME}}
_QUEUE_NAME = {"name": "name", "in": "path", "required": True, "schema": QUEUE}


def _label_filters() -> list[dict[str, Any]]:
    tags = {"type": "array", "items": TAGS["items"], "maxItems": TAGS_MAX}
    return [
        {
            **_query("tag", tags, "Only jobs with every tag given (repeat the parameter)."),
            "style": "form",
            "explode": True,
        },
        {
            "name": "meta",
            "in": "query",
            "required": False,
            "content": {"application/json": {"schema": ref("Args")}},
            "description": 'Only jobs whose meta contains this JSON object, e.g. {"tenant": "acme"}.',
        },
    ]


def _job_paths(settings: Settings) -> dict[str, Any]:
    filters = [
        _query("queue", QUEUE, "Only this queue."),
        _query("task", TASK, "Only this task."),
        *_label_filters(),
    ]
    state = _query("state", {"type": "string", "enum": [s.value for s in JobState]}, "Only this state.")
    no_content = {"204": {"description": "Deleted."}}
    return {
        "/jobs": {
            "post": _op(
                "Enqueue a job (200 with the existing job when run_key is taken)",
                {**_ok("201", "Job", "Created"), **_ok("200", "Job", "The job holding run_key")},
                body="NewJob",
            ),
            "get": _op("List jobs, newest first", _ok("200", "JobPage"), params=[state, *filters, *_paging(settings)]),
        },
        "/jobs/batch": {"post": _op("Enqueue many jobs", _ok("201", "JobIds", "Created"), body="JobBatch")},
        "/jobs/{id}": {
            "parameters": [_JOB_ID],
            "get": _op("One job with its attempt history", _ok("200", "Job")),
            "patch": _op("Change a queued job", _ok("200", "Job"), body="JobPatch"),
            "delete": _op("Delete a finished job", no_content),
        },
        "/jobs/{id}/cancel": {"parameters": [_JOB_ID], "post": _op("Cancel a job", _ok("200", "Job"))},
        "/jobs/{id}/retry": {"parameters": [_JOB_ID], "post": _op("Retry a job now", _ok("200", "Job"))},
        "/dead": {"get": _op("The dead-letter queue", _ok("200", "JobPage"), params=[*filters, *_paging(settings)])},
        "/dead/retry": {
            "post": _op(
                "Retry every dead job (of a queue / task)",
                _ok("200", "DeadRetried"),
                body="DeadFilter",
                body_required=False,
            )
        },
        "/dead/purge": {
            "post": _op(
                "Delete dead jobs (admin)", _ok("200", "DeadPurged"), body="DeadPurgeFilter", body_required=False
            )
        },
    }


def _other_paths(settings: Settings) -> dict[str, Any]:
    text = {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": STR}}}}
    html = {"200": {"description": "Dashboard", "content": {"text/html": {"schema": STR}}}}
    health = {
        "200": {"description": "Database reachable", **_json(ref("Health"))},
        "503": {"description": "Database unreachable", **_json(ref("Health"))},
    }
    auth_errors = ("401", "403")
    return {
        "/schedules": {
            "post": _op(
                "Create (201) or replace (200) a schedule",
                {**_ok("201", "Schedule", "Created"), **_ok("200", "Schedule", "Replaced")},
                body="NewSchedule",
            ),
            "get": _op("List schedules by name", _ok("200", "SchedulePage"), params=_paging(settings, by_name=True)),
        },
        "/schedules/preview": {
            "post": _op("Next fire instants of a cron expression", _ok("200", "Preview"), body="PreviewRequest")
        },
        "/schedules/{name}": {
            "parameters": [_NAME],
            "get": _op("One schedule", _ok("200", "Schedule")),
            "patch": _op("Change a schedule", _ok("200", "Schedule"), body="SchedulePatch"),
            "delete": _op("Delete a schedule", {"204": {"description": "Deleted."}}),
        },
        "/schedules/{name}/trigger": {
            "parameters": [_NAME],
            "post": _op("Enqueue one job of the schedule now", _ok("201", "Job", "Created")),
        },
        "/schedules/{name}/runs": {
            "parameters": [_NAME],
            "get": _op("Jobs fired by the schedule, newest first", _ok("200", "JobPage"), params=_paging(settings)),
        },
        "/queues": {"get": _op("Depth, oldest due job and limits per queue", _ok("200", "QueueList"))},
        "/queues/{name}": {
            "parameters": [_QUEUE_NAME],
            "patch": _op(
                "Pause, resume or limit a queue (concurrency, rate)", _ok("200", "QueueSettings"), body="QueuePatch"
            ),
        },
        "/workers": {"get": _op("Registered processes", _ok("200", "WorkerList"))},
        "/leader": {"get": _op("The leader, or null", _ok("200", "Leader"))},
        "/tokens": {
            "post": _op(
                "Create a token (admin); the token is in this response only",
                _ok("201", "CreatedToken", "Created"),
                body="NewToken",
            ),
            "get": _op("List tokens (admin)", _ok("200", "TokenList")),
        },
        "/tokens/{id}": {"parameters": [_JOB_ID], "delete": _op("Revoke a token (admin)", _ok("200", "Token"))},
        "/health": {
            "get": _op(
                "Liveness, database, leader, listener", health, public=settings.api_public_health, errors=auth_errors
            )
        },
        "/metrics": {"get": _op("Prometheus metrics", text, public=settings.api_public_metrics, errors=auth_errors)},
        "/openapi.json": {
            "get": _op(
                "This document",
                {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}},
                public=settings.api_public_openapi,
                errors=() if settings.api_public_openapi else ("401", "403"),
            )
        },
        "/": {"get": _op("The dashboard", html, public=True, errors=())},
    }


def _dashboard_paths(settings: Settings) -> dict[str, Any]:
    """The dashboard's own endpoints (pgsched.api.dashboard.api); answers are plain JSON objects."""
    obj = {"200": {"description": "OK", **_json({"type": "object"})}}
    filters = [_query("queue", QUEUE, "Only this queue."), _query("task", TASK, "Only this task.")]
    view = _query("view", {"type": "string", "enum": sorted(DASHBOARD_VIEWS)}, "Which jobs.")
    page = _query("limit", {"type": "integer", "minimum": 1, "maximum": settings.api_max_page_size}, "Page size.")
    stats = [_query("window", {"type": "string", "enum": list(WINDOWS)}, "Chart span."), *filters]
    run_key = {**_query("run_key", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,512}$"}, "A run key."),
               "required": True}  # fmt: skip
    ids = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}, "minItems": 1,
           "maxItems": BULK_MAX}  # fmt: skip
    bulk = object_schema(
        {"action": {"type": "string", "enum": ["retry", "cancel", "delete"]}, "ids": ids}, ["action", "ids"]
    )
    jobs_summary = "A keyset page of one job view (next_cursor; args=<JSON object> searches the newest 100,000 jobs)"
    return {
        "/dashboard/api/whoami": {"get": _op("The scope of the caller's token", obj)},
        "/dashboard/api/jobs": {"get": _op(jobs_summary, obj, params=[view, *filters, *_label_filters(), page])},
        "/dashboard/api/run-key": {"get": _op("The job holding a run key", obj, params=[run_key])},
        "/dashboard/api/counts": {"get": _op("Queued jobs that failed before (capped)", obj)},
        "/dashboard/api/stats": {"get": _op("Chart history per minute or hour, queue and task", obj, params=stats)},
        "/dashboard/api/jobs/bulk": {
            "post": {**_op("Retry, cancel or delete many jobs", obj), "requestBody": {"required": True, **_json(bulk)}}
        },
    }


def _workflow_paths(settings: Settings) -> dict[str, Any]:
    state = _query("state", {"type": "string", "enum": list(WORKFLOW_STATES)}, "Overall state.")
    created = _op("Create a workflow: every step and edge in one transaction", _ok("201", "WorkflowCreated"),
                  body="NewWorkflow")  # fmt: skip
    return {
        "/workflows": {
            "post": created,
            "get": _op(
                "List workflows, newest first, with progress",
                _ok("200", "WorkflowPage"),
                params=[state, *_paging(settings)],
            ),
        },
        "/workflows/{id}": {
            "parameters": [_JOB_ID],
            "get": _op("A workflow with every step", _ok("200", "WorkflowDetail")),
        },
        "/workflows/{id}/cancel": {
            "parameters": [_JOB_ID],
            "post": _op("Cancel every unfinished step", _ok("200", "WorkflowCancelled")),
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    jobs = job_schemas()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pgsched",
            "version": "1",
            "description": "Jobs, schedules and cluster state of pgsched. Errors: "
            '{"error": {"code", "message", "field"}}. Scopes: read (GET), write (mutations), admin (tokens, purge, '
            "retention).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            **_job_paths(settings),
            **_workflow_paths(settings),
            **_other_paths(settings),
            **retention_paths(_op, _ok),
            **_dashboard_paths(settings),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **jobs,
                **workflow_schemas(jobs["NewJob"]),
                **schedule_schemas(),
                **cluster_schemas(),
                **retention_schemas(),
            },
        },
    }


def query_parameters(settings: Settings) -> dict[str, dict[str, frozenset[str]]]:
    """Path -> method -> the query parameters the document lists (the dashboard page excluded)."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for path, item in openapi_document(settings)["paths"].items():
        if path == "/":
            continue
        shared = [p for p in item.get("parameters", []) if p["in"] == "query"]
        for method, op in item.items():
            if method == "parameters":
                continue
            params = [*shared, *(p for p in op.get("parameters", []) if p["in"] == "query")]
            out.setdefault(path, {})[method.upper()] = frozenset(p["name"] for p in params)
    return out


async def openapi_json(request: Request) -> Response:
    settings = api_state(request).settings
    if not settings.api_public_openapi:
        await authorize(request, Scope.READ)
    document = openapi_document(settings)
    document["servers"] = [{"url": request.scope.get("root_path") or "/"}]  # mounted under a prefix: paths are below it
    return JSONResponse(document)


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
