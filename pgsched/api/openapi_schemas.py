"""The component schemas of the OpenAPI document (jobs, schedules, the cluster) and the value schemas the
paths share. Limits come from the same constants the handlers and the tables use.

Interface layer; data only (``openapi`` assembles the document from these and its paths).
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

from pgsched.api.jobs import MAX_BATCH
from pgsched.api.schedules import MAX_PREVIEW
from pgsched.cron import validate_timezone
from pgsched.errors import ValidationError
from pgsched.job import (
    CONCURRENCY_KEY_MAX,
    CONCURRENCY_LIMIT_MAX,
    MAX_ATTEMPTS_MAX,
    ON_CONFLICT_POLICIES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_RE,
    RUN_KEY_MAX,
    RUN_KEY_SCOPES,
    TAG_MAX,
    TAGS_MAX,
    TASK_RE,
)
from pgsched.job_input import MAX_DELAY_SECONDS, MAX_TIMEOUT_SECONDS, MIN_GRACE_SECONDS, MIN_TIMEOUT_SECONDS
from pgsched.job_row import JobState
from pgsched.queue_settings import LIMIT_MAX
from pgsched.schedule_store import SCHEDULE_NAME_RE
from pgsched.token_store import MAX_EXPIRES_IN

__all__ = [
    "CRON_PATTERN",
    "NO_NUL",
    "QUEUE",
    "SCHEDULE_NAME",
    "STR",
    "TAGS",
    "TASK",
    "cluster_schemas",
    "job_schemas",
    "object_schema",
    "ref",
    "schedule_schemas",
    "time_zones",
]

SCHEDULE_NAME = SCHEDULE_NAME_RE.pattern


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "type" in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
NO_NUL = "^[^\\u0000]*$"
QUEUE = {"type": "string", "pattern": QUEUE_RE.pattern}
TASK = {"type": "string", "pattern": TASK_RE.pattern}
_PRIORITY = {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX}
_ATTEMPTS = {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_MAX}
TAGS = {
    "type": "array",
    "maxItems": TAGS_MAX,
    "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX, "pattern": NO_NUL},
    "description": "Labels to find the job by (GET /jobs?tag=).",
}


def object_schema(props: dict[str, Any], required: list[str] | None = None, *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def job_schemas() -> dict[str, Any]:
    job_props = {
        "id": _INT,
        "queue": STR,
        "task": STR,
        "args": {"type": "object"},
        "priority": _INT,
        "run_at": _TIME,
        "state": {"type": "string", "enum": [s.value for s in JobState]},
        "attempt": _INT,
        "max_attempts": _INT,
        "run_key": _nullable(STR),
        "run_key_scope": {"anyOf": [{"type": "string", "enum": list(RUN_KEY_SCOPES)}, {"type": "null"}]},
        "run_key_period_seconds": _nullable({"type": "number", "description": "For run_key_scope period."}),
        "schedule_name": _nullable(STR),
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
        "concurrency_key": _nullable(STR),
        "concurrency_limit": _nullable(_INT),
        "tags": {"type": "array", "items": STR},
        "meta": {"type": "object"},
        "expires_at": _nullable(_TIME),
        "expired": {
            "type": "boolean",
            "description": "Ended unstarted past expires_at (cancelled, errors kind expired).",
        },
        "snoozes": {**_INT, "description": "Times the task snoozed the job (Snooze)."},
        "progress": _nullable({"type": "number", "minimum": 0, "maximum": 1, "description": "Last reported progress."}),
        "progress_message": _nullable(STR),
        "progress_at": _nullable(_TIME),
        "lease_until": _nullable(
            {**_TIME, "description": "The running attempt must call heartbeat() again by then, or it is rescued."}
        ),
    }
    new_job = object_schema(
        {
            "task": TASK,
            "args": ref("Args"),
            "queue": QUEUE,
            "priority": _PRIORITY,
            "run_at": {**_TIME, "description": "ISO 8601 with an offset; or give delay_seconds."},
            "delay_seconds": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "Or run_at.",
            },
            "run_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": RUN_KEY_MAX,
                "description": "While another job holds this key (over its scope), that job is returned (200).",
            },
            "run_key_scope": {
                "type": "string",
                "enum": list(RUN_KEY_SCOPES),
                "description": "What the key is unique over: retention (default: while the job's row exists), "
                "active (while waiting, queued or running) or period (run_key_period_seconds from the enqueue).",
            },
            "run_key_period_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "How long a period key is held; implies run_key_scope period.",
            },
            "on_conflict": {
                "type": "string",
                "enum": list(ON_CONFLICT_POLICIES),
                "description": "existing (default): return the holder. replace: a holder that has not started "
                "takes these args and run_at (and priority) and is returned; a running one gives the key to a new job.",
            },
            "max_attempts": _ATTEMPTS,
            "timeout": {"type": "number", "minimum": MIN_TIMEOUT_SECONDS, "maximum": MAX_TIMEOUT_SECONDS},
            "concurrency_key": {
                "type": "string",
                "minLength": 1,
                "maxLength": CONCURRENCY_KEY_MAX,
                "description": "Jobs sharing a key run at most concurrency_limit at once (default 1).",
            },
            "concurrency_limit": {"type": "integer", "minimum": 1, "maximum": CONCURRENCY_LIMIT_MAX},
            "tags": TAGS,
            "meta": {**ref("Args"), "description": "A JSON object about the job (not its arguments)."},
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
    new_job["dependentRequired"] = {
        "concurrency_limit": ["concurrency_key"],
        "run_key_scope": ["run_key"],
        "run_key_period_seconds": ["run_key"],
        "on_conflict": ["run_key"],
    }
    no_nul = {"type": "string", "pattern": NO_NUL}
    return {
        "Args": {
            "type": "object",
            "propertyNames": no_nul,
            "additionalProperties": ref("JsonValue"),
            "description": "A JSON object; no string or key may hold NUL (PostgreSQL cannot store it).",
        },
        "JsonValue": {
            "anyOf": [
                no_nul,
                {"type": ["number", "boolean", "null"]},
                {"type": "array", "items": ref("JsonValue")},
                ref("Args"),
            ]
        },
        "Job": object_schema(job_props, list(job_props), closed=False),
        "NewJob": new_job,
        "JobBatch": object_schema(
            {
                "jobs": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("NewJob")},
                "allow_unknown_task": {
                    "type": "boolean",
                    "description": "Enqueue tasks no live worker has registered.",
                },
            },
            ["jobs"],
        ),
        "JobIds": object_schema({"ids": {"type": "array", "items": _INT}}, ["ids"]),
        "JobPatch": {
            **object_schema({"run_at": _TIME, "priority": _PRIORITY, "args": ref("Args"), "queue": QUEUE}),
            "minProperties": 1,
        },
        "JobPage": object_schema(
            {"items": {"type": "array", "items": ref("Job")}, "next_cursor": _nullable(STR)}, ["items", "next_cursor"]
        ),
        "DeadFilter": object_schema({"queue": QUEUE, "task": TASK}),
        "DeadPurgeFilter": object_schema({"queue": QUEUE, "task": TASK, "before": _TIME}),
        "DeadRetried": object_schema({"retried": _INT, "ids": {"type": "array", "items": _INT}}, ["retried", "ids"]),
        "DeadPurged": object_schema({"purged": _INT}, ["purged"]),
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


def schedule_schemas() -> dict[str, Any]:
    writable = {
        "cron": _CRON,
        "task": TASK,
        "args": _nullable(ref("Args")),
        "timezone": _nullable(ref("TimeZone")),
        "queue": _nullable(QUEUE),
        "priority": _nullable(_PRIORITY),
        "max_attempts": _nullable(_ATTEMPTS),
        "enabled": _nullable({"type": "boolean"}),
        "misfire_policy": _nullable({"type": "string", "enum": ["skip", "once", "catch_up"]}),
        "misfire_grace_seconds": _nullable(
            {"type": "number", "minimum": MIN_GRACE_SECONDS, "maximum": 366 * 86400, "description": "null: default"}
        ),
    }
    schedule = {
        "name": STR,
        "id": _INT,
        **writable,
        "timezone": STR,
        "cron": STR,
        "misfire_policy": STR,
        "misfire_grace_seconds": {"type": "number"},
        "next_fire_at": _nullable(_TIME),
        "last_fired_at": _nullable(_TIME),
        "last_error": _nullable(STR),
        "created_at": _TIME,
        "updated_at": _TIME,
    }
    return {
        "Schedule": object_schema(schedule, list(schedule), closed=False),
        "NewSchedule": object_schema(
            {"name": {"type": "string", "pattern": SCHEDULE_NAME}, **writable}, ["name", "cron", "task"]
        ),
        "SchedulePatch": {**object_schema(writable), "minProperties": 1},
        "SchedulePage": object_schema(
            {"items": {"type": "array", "items": ref("Schedule")}, "next_cursor": _nullable(STR)},
            ["items", "next_cursor"],
        ),
        "TimeZone": {"type": "string", "enum": time_zones(), "description": "IANA time zone name."},
        "PreviewRequest": object_schema(
            {
                "cron": _CRON,
                "timezone": ref("TimeZone"),
                "count": {"type": "integer", "minimum": 1, "maximum": MAX_PREVIEW},
            },
            ["cron"],
        ),
        "Preview": object_schema(
            {"cron": STR, "timezone": STR, "fires": {"type": "array", "items": _TIME}}, ["cron", "timezone", "fires"]
        ),
    }


def cluster_schemas() -> dict[str, Any]:
    queue = {
        "queue": STR,
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
        "role": STR,
        "host": STR,
        "pid": _INT,
        "queues": {"type": "array", "items": STR},
        "concurrency": _INT,
        "version": _nullable(STR),
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
        "name": STR,
        "scope": {"type": "string", "enum": ["read", "write", "admin"]},
        "created_at": _TIME,
        "last_used_at": _nullable(_TIME),
        "revoked_at": _nullable(_TIME),
        "expires_at": _nullable(_TIME),
    }
    return {
        "QueueStats": object_schema(queue, list(queue)),
        "QueueList": object_schema({"items": {"type": "array", "items": ref("QueueStats")}}, ["items"]),
        "QueuePatch": {**object_schema(settings), "minProperties": 1},
        "QueueSettings": object_schema({"queue": STR, **settings}, ["queue", *settings]),
        "Worker": object_schema(worker, list(worker)),
        "WorkerList": object_schema({"items": {"type": "array", "items": ref("Worker")}}, ["items"]),
        "Leader": object_schema({"leader": _nullable(ref("Worker"))}, ["leader"]),
        "Health": object_schema(
            {**health, "dedupe_cache": {"type": "object", "description": "Run-key cache state (disabled, ok, error)."}},
            list(health),
        ),
        "Token": object_schema(token, list(token)),
        "TokenList": object_schema({"items": {"type": "array", "items": ref("Token")}}, ["items"]),
        "NewToken": object_schema(
            {
                "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,99}$"},
                "scope": token["scope"],
                "expires_in_seconds": _nullable(
                    {"type": "number", "minimum": 1, "maximum": MAX_EXPIRES_IN, "description": "null: never expires."}
                ),
            },
            ["name"],
        ),
        "CreatedToken": object_schema(
            {**token, "token": {"type": "string", "description": "Shown once."}}, [*token, "token"]
        ),
        "Error": object_schema(
            {
                "error": object_schema(
                    {"code": STR, "message": STR, "field": _nullable(STR)}, ["code", "message", "field"]
                )
            },
            ["error"],
        ),
    }
