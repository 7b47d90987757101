"""Cluster endpoints: queues (depth, oldest due job), workers (heartbeats, liveness) and the leader.

Interface layer over ``AsyncJobStore.queue_stats_list`` / ``queue_configure`` and ``AdminStore``.
``PATCH /queues/{name}`` changes flow control: pause, concurrency, rate limit (see queue_settings).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import api_state
from pgsched.api.validation import read_object
from pgsched.queue_settings import QueueChanges
from pgsched.token_store import Scope

__all__ = ["routes"]


async def list_queues(request: Request) -> Response:
    rows = await api_state(request).jobs.queue_stats_list()
    items = [
        {
            "queue": r["queue"],
            "due": int(r["due"]),
            "scheduled": int(r["scheduled"]),
            "running": int(r["running"]),
            "succeeded": int(r["succeeded"]),
            "dead": int(r["dead"]),
            "cancelled": int(r["cancelled"]),
            "oldest_due_seconds": None if r["oldest_due_seconds"] is None else round(float(r["oldest_due_seconds"]), 3),
            "paused": bool(r["paused"]),
            "concurrency_limit": r["concurrency_limit"],
            "rate_limit": r["rate_limit"],
            "rate_period_seconds": r["rate_period_seconds"],
            "running_keys": int(r["running_keys"]),
        }
        for r in rows
    ]
    return JSONResponse({"items": items})


async def configure_queue(request: Request) -> Response:
    changes = QueueChanges.build(await read_object(request))
    settings = await api_state(request).jobs.queue_configure(request.path_params["name"], changes)
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
