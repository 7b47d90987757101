"""DashboardStore: the reads behind the dashboard's lists, counts and charts.

Data layer: runs the queries of ``sql/dashboard.sql`` and changes nothing. Each read costs what it
returns (keyset pages on an index, capped counts, bounded scans); none aggregates the jobs table.
psycopg errors stop here: a broken connection becomes ``DatabaseUnavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgsched.db import translated
from pgsched.queries import query

__all__ = ["ARGS_SEARCH_SPAN", "VIEWS", "DashboardStore", "JobView"]

# An args search reads at most this many of the newest ids (no index covers args).
ARGS_SEARCH_SPAN = 100_000

JobView = str  # "all", "available", "scheduled", "retrying", "running", "succeeded", "dead", "cancelled"
# view -> (due now, due later) for dashboard_jobs_waiting
_WAITING = {"available": (True, False), "scheduled": (False, True)}
_FINISHED = {"succeeded", "dead", "cancelled"}
VIEWS = frozenset({"all", "running", "retrying", *_WAITING, *_FINISHED})


class DashboardStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def _rows(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with translated():
            async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query(name), params)
                return list(await cur.fetchall())

    async def dashboard_jobs(
        self,
        view: JobView,
        *,
        queue: str | None,
        task: str | None,
        after: tuple[Any, int] | None,
        limit: int,
        worker_id: int | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One page of a view; ``after`` is the sort key of the last row shown (id, or (instant, id))."""
        params: dict[str, Any] = {"queue": queue, "task": task, "limit": limit, "now": now}
        at, last_id = after if after is not None else (None, None)
        if view == "all":
            return await self._rows(
                "dashboard_jobs_by_id", {**params, "before_id": last_id, "args": None, "floor_id": 0}
            )
        params.update(after_at=at, after_id=last_id)
        if view in _FINISHED:
            return await self._rows("dashboard_jobs_finished", {**params, "state": view})
        if view in _WAITING:
            due, later = _WAITING[view]
            return await self._rows("dashboard_jobs_waiting", {**params, "due": due, "later": later})
        if view == "retrying":
            return await self._rows("dashboard_jobs_retrying", params)
        return await self._rows("dashboard_jobs_running", {**params, "worker_id": worker_id})

    async def dashboard_jobs_matching(
        self, args: str, *, queue: str | None, task: str | None, before_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Jobs whose args contain ``args`` (JSON text) among the newest ARGS_SEARCH_SPAN ids, newest first."""
        (top,) = await self._rows("dashboard_job_id_max", {})
        params = {"args": args, "queue": queue, "task": task, "before_id": before_id, "limit": limit}
        return await self._rows("dashboard_jobs_by_id", {**params, "floor_id": top["id"] - ARGS_SEARCH_SPAN})

    async def dashboard_jobs_labelled(
        self,
        *,
        queue: str | None,
        task: str | None,
        before_id: int | None,
        limit: int,
        tags: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs holding every tag (else whose meta contains ``meta``), newest first, through the label indexes."""
        params = {"queue": queue, "task": task, "before_id": before_id, "limit": limit}
        return await self._rows(
            "dashboard_jobs_labelled", {**params, "tags": list(tags), "meta": Jsonb(dict(meta or {}))}
        )

    async def dashboard_job_by_run_key(self, run_key: str) -> int | None:
        rows = await self._rows("dashboard_job_by_run_key", {"run_key": run_key})
        return int(rows[0]["id"]) if rows else None

    async def dashboard_retrying_count(self, cap: int) -> int:
        """Queued jobs that failed before, counted up to ``cap`` (cap + 1 means more)."""
        (row,) = await self._rows("dashboard_retrying_count", {"cap": cap})
        return int(row["n"])

    async def dashboard_job_stats(
        self, since: datetime, until: datetime, *, hourly: bool, queue: str | None, task: str | None
    ) -> list[dict[str, Any]]:
        """Chart points in [since, until), one per minute or per hour, from the leader's rollup."""
        params = {"since": since, "until": until, "queue": queue, "task": task}
        return await self._rows("dashboard_job_stats", {**params, "hourly": hourly})
