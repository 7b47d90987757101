"""The OpenAPI 3 document at ``/openapi.json``, hand-written to match what the endpoints accept and return.

Interface layer; data only. Limits (page size, batch size, priority range) come from the same
constants and Settings the handlers use, so the document cannot drift from them silently.
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import authorize
from pgsched.api.dashboard.api import BULK_MAX, WINDOWS
from pgsched.api.jobs import MAX_BATCH
from pgsched.api.schedules import MAX_PREVIEW
from pgsched.api.state import api_state
from pgsched.api.validation import BIGINT_MAX, JOB_CURSOR_RE
from pgsched.api.workflows import KINDS, STATES
from pgsched.api.workflows import MAX_STEPS as MAX_WORKFLOW_STEPS
from pgsched.config import Settings
from pgsched.cron import validate_timezone
from pgsched.dashboard_store import VIEWS as DASHBOARD_VIEWS
from pgsched.errors import ValidationError
from pgsched.job import (
    CONCURRENCY_KEY_MAX,
    CONCURRENCY_LIMIT_MAX,
    MAX_ATTEMPTS_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_RE,
    RUN_KEY_MAX,
    TAG_MAX,
    TAGS_MAX,
    TASK_RE,
    JobState,
)
from pgsched.job_input import MAX_DELAY_SECONDS, MAX_TIMEOUT_SECONDS, MIN_GRACE_SECONDS, MIN_TIMEOUT_SECONDS
from pgsched.queue_settings import LIMIT_MAX
from pgsched.schedule_store import SCHEDULE_NAME_RE
from pgsched.token_store import MAX_EXPIRES_IN, Scope

__all__ = ["openapi_document", "query_parameters", "routes"]

_SCHEDULE_NAME = SCHEDULE_NAME_RE.pattern


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
NO_NUL = "^[^\\u0000]*$"
_QUEUE = {"type": "string", "pattern": QUEUE_RE.pattern}
_TASK = {"type": "string", "pattern": TASK_RE.pattern}
_PRIORITY = {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX}
_ATTEMPTS = {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_MAX}
_TAGS = {
    "type": "array",
    "maxItems": TAGS_MAX,
    "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX, "pattern": NO_NUL},
    "description": "Labels to find the job by (GET /jobs?tag=).",
}


def _object(props: dict[str, Any], required: list[str] | None = None, *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def _job_schemas() -> dict[str, Any]:
    job_props = {
        "id": _INT,
        "queue": _STR,
        "task": _STR,
        "args": {"type": "object"},
        "priority": _INT,
        "run_at": _TIME,
        "state": {"type": "string", "enum": [s.value for s in JobState]},
        "attempt": _INT,
        "max_attempts": _INT,
        "run_key": _nullable(_STR),
        "schedule_name": _nullable(_STR),
        "worker_id": _nullable(_INT),
        "started_at": _nullable(_TIME),
        "finished_at": _nullable(_TIME),
        "cancel_requested_at": _nullable(_TIME),
        "errors": {
            "type": "array",
            "items": {"type": "object"},
            "description": "One entry per failed, snoozed or steered attempt: {at, attempt, error, traceback, kind};"
            " kind says what ended or delayed it (exception, timeout, no_retry, snooze, snooze_limit, retry,"
            " discard, cancel, worker_lost, lease_expired, crash, memory, result).",
        },
        "result": {"description": "JSON value returned by the task, or null."},
        "timeout": _nullable({"type": "number"}),
        "created_at": _TIME,
        "concurrency_key": _nullable(_STR),
        "concurrency_limit": _nullable(_INT),
        "tags": {"type": "array", "items": _STR},
        "meta": {"type": "object"},
        "expires_at": _nullable(_TIME),
        "expired": {
            "type": "boolean",
            "description": "Ended unstarted past expires_at (cancelled, errors kind expired).",
        },
        "snoozes": {**_INT, "description": "Times the task snoozed the job (Snooze)."},
        "progress": _nullable({"type": "number", "minimum": 0, "maximum": 1, "description": "Last reported progress."}),
        "progress_message": _nullable(_STR),
        "progress_at": _nullable(_TIME),
        "lease_until": _nullable(
            {**_TIME, "description": "The running attempt must call heartbeat() again by then, or it is rescued."}
        ),
    }
    new_job = _object(
        {
            "task": _TASK,
            "args": _ref("Args"),
            "queue": _QUEUE,
            "priority": _PRIORITY,
            "run_at": {**_TIME, "description": "ISO 8601 with an offset; or give delay_seconds."},
            "delay_seconds": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "Or run_at.",
            },
            "run_key": {"type": "string", "minLength": 1, "maxLength": RUN_KEY_MAX},
            "max_attempts": _ATTEMPTS,
            "timeout": {"type": "number", "minimum": MIN_TIMEOUT_SECONDS, "maximum": MAX_TIMEOUT_SECONDS},
            "concurrency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": CONCURRENCY_KEY_MAX,
                "description": "Jobs sharing a key run at most concurrency_limit at once (default 1).",
            },
            "concurrency_limit": {"type": "integer", "minimum": 1, "maximum": CONCURRENCY_LIMIT_MAX},
            "tags": _TAGS,
            "meta": {**_ref("Args"), "description": "A JSON object about the job (not its arguments)."},
            "expires_at": {**_TIME, "description": "Deadline to start; or give start_within_seconds."},
            "start_within_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "Deadline to start, counted from run_at. Not started by then: the job ends as expired.",
            },
            "allow_unknown_task": {
                "type": "boolean",
                "description": "Enqueue even when no live worker has registered the task (deploy order).",
            },
        },
        ["task"],
    )
    new_job["not"] = {"required": ["run_at", "delay_seconds"], "description": "run_at or delay_seconds, not both"}
    new_job["dependentRequired"] = {"concurrency_limit": ["concurrency_key"]}
    no_nul = {"type": "string", "pattern": NO_NUL}
    return {
        "Args": {
            "type": "object",
            "propertyNames": no_nul,
            "additionalProperties": _ref("JsonValue"),
            "description": "A JSON object; no string or key may hold NUL (PostgreSQL cannot store it).",
        },
        "JsonValue": {
            "anyOf": [
                no_nul,
                {"type": ["number", "boolean", "null"]},
                {"type": "array", "items": _ref("JsonValue")},
                _ref("Args"),
            ]
        },
        "Job": _object(job_props, list(job_props), closed=False),
        "NewJob": new_job,
        "JobBatch": _object(
            {
                "jobs": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _ref("NewJob")},
                "allow_unknown_task": {
                    "type": "boolean",
                    "description": "Enqueue tasks no live worker has registered.",
                },
            },
            ["jobs"],
        ),
        "JobIds": _object({"ids": {"type": "array", "items": _INT}}, ["ids"]),
        "JobPatch": {
            **_object({"run_at": _TIME, "priority": _PRIORITY, "args": _ref("Args"), "queue": _QUEUE}),
            "minProperties": 1,
        },
        "JobPage": _object(
            {"items": {"type": "array", "items": _ref("Job")}, "next_cursor": _nullable(_STR)}, ["items", "next_cursor"]
        ),
        "DeadFilter": _object({"queue": _QUEUE, "task": _TASK}),
        "DeadPurgeFilter": _object({"queue": _QUEUE, "task": _TASK, "before": _TIME}),
        "DeadRetried": _object({"retried": _INT, "ids": {"type": "array", "items": _INT}}, ["retried", "ids"]),
        "DeadPurged": _object({"purged": _INT}, ["purged"]),
        **_workflow_schemas(new_job),
    }


def _workflow_schemas(new_job: dict[str, Any]) -> dict[str, Any]:
    step_props = {k: v for k, v in new_job["properties"].items() if k != "run_key"}
    ref = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1, "maxLength": 200}]}
    step_props.update(
        key={"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL, "description": "Unique name."},
        after={"type": "array", "items": ref, "description": "Earlier steps (index or key) this one waits for."},
        on_failure={"type": "string", "enum": ["cancel", "run", "failed"], "description": "On a failed dependency."},
        receive={"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", "description": "Args key of results."},
    )
    step = {**_object(step_props, ["task"]), "not": new_job["not"], "dependentRequired": new_job["dependentRequired"]}
    info = {
        "id": _INT,
        "name": _STR,
        "kind": _STR,
        "created_at": _TIME,
        **dict.fromkeys(("steps", "waiting", "queued", "running", "succeeded", "dead", "cancelled"), _INT),
        "state": {"type": "string", "enum": list(STATES)},
        "finished_at": _nullable(_TIME),
    }
    step_row = {
        "id": _INT,
        "task": _STR,
        "queue": _STR,
        "priority": _INT,
        "state": {"type": "string", "enum": [s.value for s in JobState]},
        "attempt": _INT,
        "max_attempts": _INT,
        "depends_on": {"type": "array", "items": _INT},
        "created_at": _TIME,
        "started_at": _nullable(_TIME),
        "finished_at": _nullable(_TIME),
        "duration_seconds": _nullable({"type": "number"}),
        "last_error": _nullable(_STR),
        "result": {"description": "JSON value returned by the step, or null."},
    }
    name = {"type": "string", "maxLength": 200, "pattern": NO_NUL}
    return {
        "NewWorkflow": _object(
            {
                "name": name,
                "kind": {"type": "string", "enum": list(KINDS)},
                "steps": {"type": "array", "minItems": 1, "maxItems": MAX_WORKFLOW_STEPS, "items": step},
            },
            ["steps"],
        ),
        "WorkflowCreated": _object(
            {"id": _INT, "job_ids": {"type": "array", "items": _INT}, "keys": {"type": "object"}},
            ["id", "job_ids", "keys"],
        ),
        "Workflow": _object(info, list(info)),
        "WorkflowDetail": _object(
            {**info, "items": {"type": "array", "items": _object(step_row, list(step_row))}}, [*info, "items"]
        ),
        "WorkflowCancelled": _object({**info, "cancelled_steps": _INT}, [*info, "cancelled_steps"]),
        "WorkflowPage": _object(
            {"items": {"type": "array", "items": _ref("Workflow")}, "next_cursor": _nullable(_STR)},
            ["items", "next_cursor"],
        ),
    }


def _cron_field(value: str) -> str:
    item = rf"(\*|({value})(-({value}))?)(/[1-9])?"
    return rf"{item}(,{item})*"


_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY = (
    r"[0-5]?[0-9]",
    r"[01]?[0-9]|2[0-3]",
    r"[1-9]|1[0-9]|2[0-8]",
    r"[1-9]|1[0-2]",
    "[0-6]",
)
# A documented subset that always fires (days 1-28): the server accepts more (names, L, days 29-31).
CRON_PATTERN = (
    rf"^({_cron_field(_MINUTE)} )?{_cron_field(_MINUTE)} {_cron_field(_HOUR)} "
    rf"{_cron_field(_DAY)} {_cron_field(_MONTH)} {_cron_field(_WEEKDAY)}$"
)
_CRON = {
    "type": "string",
    "pattern": CRON_PATTERN,
    "description": "5 fields, or 6 with seconds first; the pattern shows the numeric subset.",
}


@functools.cache
def time_zones() -> list[str]:
    """The IANA names the server accepts (the enum of the TimeZone schema)."""
    names = []
    for name in sorted(zoneinfo.available_timezones()):
        try:
            validate_timezone(name)
        except ValidationError:
            continue
        names.append(name)
    return names


def _schedule_schemas() -> dict[str, Any]:
    writable = {
        "cron": _CRON,
        "task": _TASK,
        "args": _nullable(_ref("Args")),
        "timezone": _nullable(_ref("TimeZone")),
        "queue": _nullable(_QUEUE),
        "priority": _nullable(_PRIORITY),
        "max_attempts": _nullable(_ATTEMPTS),
        "enabled": _nullable({"type": "boolean"}),
        "misfire_policy": _nullable({"type": "string", "enum": ["skip", "once", "catch_up"]}),
        "misfire_grace_seconds": _nullable(
            {"type": "number", "minimum": MIN_GRACE_SECONDS, "maximum": 366 * 86400, "description": "null: default"}
        ),
    }
    schedule = {
        "name": _STR,
        "id": _INT,
        **writable,
        "timezone": _STR,
        "cron": _STR,
        "misfire_policy": _STR,
        "misfire_grace_seconds": {"type": "number"},
        "next_fire_at": _nullable(_TIME),
        "last_fired_at": _nullable(_TIME),
        "last_error": _nullable(_STR),
        "created_at": _TIME,
        "updated_at": _TIME,
    }
    return {
        "Schedule": _object(schedule, list(schedule), closed=False),
        "NewSchedule": _object(
            {"name": {"type": "string", "pattern": _SCHEDULE_NAME}, **writable}, ["name", "cron", "task"]
        ),
        "SchedulePatch": {**_object(writable), "minProperties": 1},
        "SchedulePage": _object(
            {"items": {"type": "array", "items": _ref("Schedule")}, "next_cursor": _nullable(_STR)},
            ["items", "next_cursor"],
        ),
        "TimeZone": {"type": "string", "enum": time_zones(), "description": "IANA time zone name."},
        "PreviewRequest": _object(
            {
                "cron": _CRON,
                "timezone": _ref("TimeZone"),
                "count": {"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW},
            },
            ["cron"],
        ),
        "Preview": _object(
            {"cron": _STR, "timezone": _STR, "fires": {"type": "array", "items": _TIME}}, ["cron", "timezone", "fires"]
        ),
    }


def _cluster_schemas() -> dict[str, Any]:
    queue = {
        "queue": _STR,
        "due": _INT,
        "scheduled": _INT,
        "running": _INT,
        "succeeded": _INT,
        "dead": _INT,
        "cancelled": _INT,
        "oldest_due_seconds": _nullable({"type": "number"}),
        "paused": {"type": "boolean"},
        "concurrency_limit": _nullable(_INT),
        "rate_limit": _nullable(_INT),
        "rate_period_seconds": _nullable({"type": "number"}),
        "running_keys": _INT,
        "counts_age_seconds": _nullable(
            {"type": "number", "description": "null: counts are exact; else the age of the leader's recount."}
        ),
    }
    limit = _nullable({"type": "integer", "minimum": 1, "maximum": LIMIT_MAX})
    settings = {
        "paused": {"type": "boolean"},
        "concurrency": {**limit, "description": "Jobs of the queue running at once, cluster-wide; null: unlimited."},
        "rate_limit": {**limit, "description": "Job starts per rate_period_seconds (token bucket); null: unlimited."},
        "rate_period_seconds": {"type": "number", "minimum": 0.001, "maximum": 86400},
        "rate_burst": {**limit, "description": "Starts allowed at once; null: max(1, rate_limit / 20)."},
    }
    worker = {
        "id": _INT,
        "role": _STR,
        "host": _STR,
        "pid": _INT,
        "queues": {"type": "array", "items": _STR},
        "concurrency": _INT,
        "version": _nullable(_STR),
        "started_at": _TIME,
        "heartbeat_at": _TIME,
        "heartbeat_age_seconds": {"type": "number"},
        "alive": {"type": "boolean"},
        "is_leader": {"type": "boolean"},
    }
    health = {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "database": {"type": "boolean"},
        "leader": _nullable({"type": "boolean"}),
        "listener": _nullable({"type": "boolean", "description": "At least one live worker (listener)."}),
        "workers_alive": _nullable(_INT),
    }
    token = {
        "id": _INT,
        "name": _STR,
        "scope": {"type": "string", "enum": ["read", "write", "admin"]},
        "created_at": _TIME,
        "last_used_at": _nullable(_TIME),
        "revoked_at": _nullable(_TIME),
        "expires_at": _nullable(_TIME),
    }
    return {
        "QueueStats": _object(queue, list(queue)),
        "QueueList": _object({"items": {"type": "array", "items": _ref("QueueStats")}}, ["items"]),
        "QueuePatch": {**_object(settings), "minProperties": 1},
        "QueueSettings": _object({"queue": _STR, **settings}, ["queue", *settings]),
        "Worker": _object(worker, list(worker)),
        "WorkerList": _object({"items": {"type": "array", "items": _ref("Worker")}}, ["items"]),
        "Leader": _object({"leader": _nullable(_ref("Worker"))}, ["leader"]),
        "Health": _object(
            {**health, "dedupe_cache": {"type": "object", "description": "Run-key cache state (disabled, ok, error)."}},
            list(health),
        ),
        "Token": _object(token, list(token)),
        "TokenList": _object({"items": {"type": "array", "items": _ref("Token")}}, ["items"]),
        "NewToken": _object(
            {
                "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$"},
                "scope": token["scope"],
                "expires_in_seconds": _nullable(
                    {"type": "number", "minimum": 1, "maximum": MAX_EXPIRES_IN, "description": "null: never expires."}
                ),
            },
            ["name"],
        ),
        "CreatedToken": _object(
            {**token, "token": {"type": "string", "description": "Shown once."}}, [*token, "token"]
        ),
        "Error": _object(
            {"error": _object({"code": _STR, "message": _STR, "field": _nullable(_STR)}, ["code", "message", "field"])},
            ["error"],
        ),
    }


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
        op["responses"][code] = {"description": _ERRORS[code], **_json(_ref("Error"))}
    if body is not None:
        op["requestBody"] = {"required": body_required, **_json(_ref(body))}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _ok(code: str, schema: str, description: str = "OK") -> dict[str, Any]:
    return {code: {"description": description, **_json(_ref(schema))}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paging(settings: Settings, *, by_name: bool = False) -> list[dict[str, Any]]:
    cursor = _SCHEDULE_NAME if by_name else JOB_CURSOR_RE.pattern
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
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": _SCHEDULE_NAME}}
_QUEUE_NAME = {"name": "name", "in": "path", "required": True, "schema": _QUEUE}


def _label_filters() -> list[dict[str, Any]]:
    tags = {"type": "array", "items": _TAGS["items"], "maxItems": TAGS_MAX}
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
            "content": {"application/json": {"schema": _ref("Args")}},
            "description": 'Only jobs whose meta contains this JSON object, e.g. {"tenant": "acme"}.',
        },
    ]


def _job_paths(settings: Settings) -> dict[str, Any]:
    filters = [
        _query("queue", _QUEUE, "Only this queue."),
        _query("task", _TASK, "Only this task."),
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
        "/workflows": {
            "post": _op(
                "Create a workflow: every step and edge in one transaction",
                _ok("201", "WorkflowCreated"),
                body="NewWorkflow",
            ),
            "get": _op(
                "List workflows, newest first, with progress",
                _ok("200", "WorkflowPage"),
                params=[
                    _query("state", {"type": "string", "enum": list(STATES)}, "Overall state."),
                    *_paging(settings),
                ],
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
    text = {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": _STR}}}}
    html = {"200": {"description": "Dashboard", "content": {"text/html": {"schema": _STR}}}}
    health = {
        "200": {"description": "Database reachable", **_json(_ref("Health"))},
        "503": {"description": "Database unreachable", **_json(_ref("Health"))},
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
    filters = [_query("queue", _QUEUE, "Only this queue."), _query("task", _TASK, "Only this task.")]
    view = _query("view", {"type": "string", "enum": sorted(DASHBOARD_VIEWS)}, "Which jobs.")
    page = _query("limit", {"type": "integer", "minimum": 1, "maximum": settings.api_max_page_size}, "Page size.")
    stats = [_query("window", {"type": "string", "enum": list(WINDOWS)}, "Chart span."), *filters]
    run_key = {**_query("run_key", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,512}$"}, "A run key."),
               "required": True}  # fmt: skip
    ids = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}, "minItems": 1,
           "maxItems": BULK_MAX}  # fmt: skip
    bulk = _object({"action": {"type": "string", "enum": ["retry", "cancel", "delete"]}, "ids": ids}, ["action", "ids"])
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


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pgsched",
            "version": "1",
            "description": "Jobs, schedules and cluster state of pgsched. Errors: "
            '{"error": {"code", "message", "field"}}. Scopes: read (GET), write (mutations), admin (tokens, purge).',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {**_job_paths(settings), **_other_paths(settings), **_dashboard_paths(settings)},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**_job_schemas(), **_schedule_schemas(), **_cluster_schemas()},
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
