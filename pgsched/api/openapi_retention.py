"""The OpenAPI paths and component schemas of the retention endpoints (``pgsched.api.retention``).

Interface layer; data only. Limits come from ``pgsched.retention``, as the handlers check them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgsched.api.openapi_schemas import QUEUE, STR, object_schema, ref
from pgsched.retention import FINAL_STATES, MAX_KEEP_SECONDS

__all__ = ["retention_paths", "retention_schemas"]

_STATE = {"type": "string", "enum": [str(s) for s in FINAL_STATES]}
_APPLIES = "applies to jobs that finish from then on (a finished job keeps its purge_at)"


def retention_paths(op: Callable[..., dict[str, Any]], ok: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """``op`` and ``ok`` are the document's own operation and response builders."""
    listed = {
        "name": "queue",
        "in": "query",
        "required": False,
        "schema": {"anyOf": [QUEUE, {"const": "*"}]},
        "description": "The retention this queue's jobs get per final state (own row or default); * the defaults.",
    }
    params = [
        {"name": "queue", "in": "path", "required": True, "schema": QUEUE},
        {"name": "state", "in": "path", "required": True, "schema": _STATE},
    ]
    return {
        "/retention": {
            "get": op(
                "Retention per queue and final state (queue * holds the defaults)",
                ok("200", "RetentionList"),
                params=[listed],
            ),
        },
        "/retention/{queue}/{state}": {
            "parameters": params,
            "put": op(
                f"Set a queue's retention for one final state (admin); {_APPLIES}",
                ok("200", "RetentionSet"),
                body="RetentionPut",
            ),
            "delete": op(
                f"Remove a queue's own retention: back to the default (admin); {_APPLIES}",
                {"204": {"description": "Removed."}},
            ),
        },
    }


def retention_schemas() -> dict[str, Any]:
    keep = {"type": "number", "minimum": 1, "maximum": MAX_KEEP_SECONDS}
    rule = {
        "queue": STR,
        "state": _STATE,
        "keep_seconds": {**keep, "description": "How long jobs finished in this state are kept."},
        "keep": {**STR, "description": "The same, for people: 90d, 12h, 1d 6h."},
        "source": {"type": "string", "enum": ["queue", "default"], "description": "The queue's own row or queue *."},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    }
    warning = {
        "type": ["string", "null"],
        "description": "Set when the retention needs more time partitions ahead than the leader keeps (400): such "
        "jobs wait in pgsched.jobs_done_default until their partition is created.",
    }
    return {
        "Retention": object_schema(rule, list(rule)),
        "RetentionList": object_schema({"items": {"type": "array", "items": ref("Retention")}}, ["items"]),
        "RetentionSet": object_schema({**rule, "warning": warning}, [*rule, "warning"]),
        "RetentionPut": object_schema({"keep_seconds": keep}, ["keep_seconds"]),
    }
