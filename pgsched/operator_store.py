"""OperatorStore: what an operator does to jobs and queues (API, dashboard, CLI): list, change, cancel, retry, redrive
and purge dead jobs, configure queues.

Data layer. Enqueue and the reads by id live in ``store``; the worker's transitions in ``worker_store``. A statement
that may meet a job a claim or finish is moving between partitions runs through ``db.execute_moving_async`` (40001 is
retried there). psycopg errors stop here and become pgsched errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pgsched import db, enqueue_rows
from pgsched.clock import Clock, SystemClock
from pgsched.errors import InvalidStateError, JobNotFound
from pgsched.job import validate_queue
from pgsched.job_row import Job, JobState
from pgsched.queries import query
from pgsched.queue_settings import QueueChanges

__all__ = ["JobChanges", "OperatorStore"]


@dataclass(frozen=True, slots=True)
class JobChanges:
    """Validated changes for a queued job (PATCH /jobs/{id}); None keeps the current value."""

    run_at: datetime | None = None
    priority: int | None = None
    args: dict[str, Any] | None = None
    queue: str | None = None


class OperatorStore:
    """Operator changes of jobs and queues, over an async pool."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        with db.translated():
            async with self._pool.connection() as pooled:
                yield pooled

    async def job_list(
        self,
        *,
        state: JobState | str | None = None,
        queue: str | None = None,
        task: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
        tags: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Newest first; ``tags``: jobs holding every one; ``meta``: jobs whose meta contains it."""
        params = enqueue_rows.list_params(state, queue, task, before_id, limit, tags, meta)
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(enqueue_rows.list_query(tags, meta), params)
            return [Job.from_row(r) for r in await cur.fetchall()]

    async def job_cancel(self, job_id: int) -> JobState:
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("job_cancel"), {"id": job_id})
            row = await cur.fetchone()
            assert row is not None
            return JobState(row["state"])

    async def job_retry(self, job_id: int) -> None:
        async with self._conn() as c:
            await db.execute_moving_async(c, query("job_retry"), {"id": job_id})

    async def queue_configure(self, queue: str, changes: QueueChanges) -> dict[str, Any]:
        """Apply flow-control changes to a queue (creating its settings row); returns its settings."""
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("queue_configure"), changes.params(validate_queue(queue)))
            row = await cur.fetchone()
            assert row is not None
            return dict(row)

    async def queue_stats_list(self) -> list[dict[str, Any]]:
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("queue_stats_list"))
            return list(await cur.fetchall())

    async def job_update(self, job_id: int, changes: JobChanges) -> Job:
        """Change a queued job; ``InvalidStateError`` once it started or finished, ``JobNotFound`` if missing."""
        params = {
            "id": job_id,
            "run_at": changes.run_at,
            "priority": changes.priority,
            "args": None if changes.args is None else Jsonb(changes.args),
            "queue": changes.queue,
        }
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("job_update"), params)  # a claim may move it meanwhile
            row = await cur.fetchone()
            if row is not None:
                return Job.from_row(row)
            await cur.execute(query("job_state_get"), {"id": job_id})
            found = await cur.fetchone()
        if found is None:
            raise JobNotFound(job_id)
        raise InvalidStateError(f"job {job_id} is {found['state']}; only a queued job can be changed")

    async def dead_retry_many(self, *, queue: str | None = None, task: str | None = None) -> list[int]:
        """Queue every dead job (of one queue / task) to run now; returns their ids."""
        params = {"queue": queue, "task": task, "now": self._clock.db_now()}
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("dead_retry_many"), params)
            return sorted(r["id"] for r in await cur.fetchall())

    async def dead_purge(
        self, *, queue: str | None = None, task: str | None = None, before: datetime | None = None
    ) -> int:
        """Delete dead jobs (of one queue / task, finished before ``before``); returns how many."""
        async with self._conn() as c, c.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("dead_purge"), {"queue": queue, "task": task, "before": before})
            row = await cur.fetchone()
            return int(row["purged"]) if row else 0
