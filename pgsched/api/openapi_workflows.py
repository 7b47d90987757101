"""The OpenAPI component schemas of the workflow endpoints (``pgsched.api.workflows``).

Interface layer; data only. A step is a NewJob (without run_key) plus its place in the graph, so the
step schema is derived from the NewJob schema and cannot drift from it.
"""

from __future__ import annotations

from typing import Any

from pgsched.api.openapi_schemas import NO_NUL, STR, object_schema, ref
from pgsched.api.workflows import KINDS, MAX_STEPS, STATES
from pgsched.job_row import JobState

__all__ = ["workflow_schemas"]

_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _step(new_job: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in new_job["properties"].items() if k != "run_key"}
    reference = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1, "maxLength": 200}]}
    props.update(
        key={"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL, "description": "Unique name."},
        after={"type": "array", "items": reference, "description": "Earlier steps (index or key); else a 409."},
        on_failure={"type": "string", "enum": ["cancel", "run", "failed"], "description": "On a failed dependency."},
        receive={"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", "description": "Args key of results."},
    )
    step = object_schema(props, ["task"])
    for rule in ("not", "dependentRequired"):
        if rule in new_job:
            step[rule] = new_job[rule]
    return step


def workflow_schemas(new_job: dict[str, Any]) -> dict[str, Any]:
    info = {
        "id": _INT,
        "name": STR,
        "kind": STR,
        "created_at": _TIME,
        **dict.fromkeys(("steps", "waiting", "queued", "running", "succeeded", "dead", "cancelled"), _INT),
        "state": {"type": "string", "enum": list(STATES)},
        "finished_at": _nullable(_TIME),
    }
    step_row = {
        "id": _INT,
        "task": STR,
        "queue": STR,
        "priority": _INT,
        "state": {"type": "string", "enum": [s.value for s in JobState]},
        "attempt": _INT,
        "max_attempts": _INT,
        "depends_on": {"type": "array", "items": _INT},
        "created_at": _TIME,
        "started_at": _nullable(_TIME),
        "finished_at": _nullable(_TIME),
        "duration_seconds": _nullable({"type": "number"}),
        "last_error": _nullable(STR),
        "result": {"description": "JSON value returned by the step, or null."},
    }
    name = {"type": "string", "maxLength": 200, "pattern": NO_NUL}
    steps = {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": _step(new_job)}
    return {
        "NewWorkflow": object_schema(
            {"name": name, "kind": {"type": "string", "enum": list(KINDS)}, "steps": steps}, ["steps"]
        ),
        "WorkflowCreated": object_schema(
            {"id": _INT, "job_ids": {"type": "array", "items": _INT}, "keys": {"type": "object"}},
            ["id", "job_ids", "keys"],
        ),
        "Workflow": object_schema(info, list(info)),
        "WorkflowDetail": object_schema(
            {**info, "items": {"type": "array", "items": object_schema(step_row, list(step_row))}}, [*info, "items"]
        ),
        "WorkflowCancelled": object_schema({**info, "cancelled_steps": _INT}, [*info, "cancelled_steps"]),
        "WorkflowPage": object_schema(
            {"items": {"type": "array", "items": ref("Workflow")}, "next_cursor": _nullable(STR)},
            ["items", "next_cursor"],
        ),
    }
