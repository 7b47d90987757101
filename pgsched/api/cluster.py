"""Cluster endpoints: queues (depth, oldest due job), workers (heartbeats, liveness) and the leader.

Interface layer over ``AsyncJobStore.queue_stats_list`` and ``AdminStore``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgsched.api.auth import protected
from pgsched.api.state import api_state
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
        }
        for r in rows
    ]
    return JSONResponse({"items": items})


async def list_workers(request: Request) -> Response:
    workers = await api_state(request).admin.cluster_list()
    return JSONResponse({"items": [w.to_dict() for w in workers]})


async def get_leader(request: Request) -> Response:
    leader = await api_state(request).admin.leader_get()
    return JSONResponse({"leader": leader.to_dict() if leader else None})


routes = [
    Route("/queues", protected(Scope.READ)(list_queues), methods=["GET"]),
    Route("/workers", protected(Scope.READ)(list_workers), methods=["GET"]),
    Route("/leader", protected(Scope.READ)(get_leader), methods=["GET"]),
]
