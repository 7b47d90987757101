"""Cluster endpoints: queues (depth, oldest due job), workers (heartbeats, liveness) and the leader.

Interface layer over ``AdminStore.queue_counts_list`` (bounded cost: exact while small, the leader's
recount when large, ``counts_age_seconds`` then says how old), ``queue_configure`` and ``AdminStore``.
``PATCH /queues/{name}`` changes flow control: pause, concurrency, rate limit (see queue_settings).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import api_state
from pgsched.api.validation import read_object
from pgsched.queue_settings import QueueChanges
from pgsched.token_store import Scope

__all__ = ["queue_item", "routes"]


def queue_item(row: dict[str, Any]) -> dict[str, Any]:
    """One /queues item from a ``queue_counts_list`` row."""
    age = row["counts_age_seconds"]
    oldest = row["oldest_due_seconds"]
    return {
        "queue": row["queue"],
        **{state: int(row[state]) for state in ("due", "scheduled", "running", "succeeded", "dead", "cancelled")},
        "oldest_due_seconds": None if oldest is None else round(max(0.0, float(oldest)), 3),
        "paused": bool(row["paused"]),
        "concurrency_limit": row["concurrency_limit"],
        "rate_limit": row["rate_limit"],
        "rate_period_seconds": row["rate_period_seconds"],
        "running_keys": int(row["running_keys"]),
        "counts_age_seconds": None if age is None else round(float(age), 3),
    }


async def list_queues(request: Request) -> Response:
    rows = await api_state(request).reads.read(lambda s: s.admin.queue_counts_list())
    return JSONResponse({"items": [queue_item(r) for r in rows]})


async def configure_queue(request: Request) -> Response:
    changes = QueueChanges.build(await read_object(request))
    settings = await api_state(request).operator.queue_configure(request.path_params["name"], changes)
    return JSONResponse(settings)


async def list_workers(request: Request) -> Response:
    workers = await api_state(request).admin.cluster_list()
    return JSONResponse({"items": [w.to_dict() for w in workers]})


async def get_leader(request: Request) -> Response:
    leader = await api_state(request).admin.leader_get()
    return JSONResponse({"leader": leader.to_dict() if leader else None})


routes = [
    Route("/queues", protected(Scope.READ)(list_queues), methods=["GET"]),
    Route("/queues/{name}", protected(Scope.ADMIN)(configure_queue), methods=["PATCH"]),
    Route("/workers", protected(Scope.READ)(list_workers), methods=["GET"]),
    Route("/leader", protected(Scope.READ)(get_leader), methods=["GET"]),
]
