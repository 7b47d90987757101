"""AdminStore: read-only views of the cluster for operators (API, CLI, doctor).

Data layer: runs the queries of ``sql/api.sql`` and nothing that changes data. psycopg
errors stop here: a broken or missing connection becomes ``DatabaseUnavailable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.queries import query

__all__ = ["QUEUE_COUNT_CAP", "AdminStore", "Health", "JobTotals", "WorkerInfo"]

# Rows per state read live per request; past it, counts come from the leader's pgsched.queue_counts.
QUEUE_COUNT_CAP = 1000


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One row of the ``pgsched.cluster`` view."""

    id: int
    role: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str | None
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    alive: bool
    is_leader: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "heartbeat_age_seconds": round(self.heartbeat_age_seconds, 3),
            "alive": self.alive,
            "is_leader": self.is_leader,
        }


@dataclass(frozen=True, slots=True)
class Health:
    """What /health reports when the database answered."""

    leader: bool
    workers_alive: int
    listeners_waiting: int


@dataclass(frozen=True, slots=True)
class JobTotals:
    """Rows of ``pgsched.job_totals`` and ``job_total_buckets``, and how far (finished_at) they count."""

    totals: list[dict[str, Any]]
    buckets: list[dict[str, Any]]
    counted_until: datetime | None


class AdminStore:
    """Cluster, health, metrics and doctor reads."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def _cursor(self, wait: float | None = None) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        with db.translated():
            async with self._pool.connection(timeout=wait) as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur

    async def cluster_list(self) -> list[WorkerInfo]:
        async with self._cursor() as cur:
            await cur.execute(query("cluster_list"))
            return [WorkerInfo(**r) for r in await cur.fetchall()]

    async def leader_get(self) -> WorkerInfo | None:
        """The registered process marked leader, if any."""
        return next((w for w in await self.cluster_list() if w.is_leader), None)

    async def health_check(self, *, wait: float = 2.0) -> Health:
        async with self._cursor(wait) as cur:
            await cur.execute(query("health_check"))
            row = await cur.fetchone()
        assert row is not None
        return Health(
            leader=bool(row["leader"]),
            workers_alive=int(row["workers_alive"]),
            listeners_waiting=int(row["listeners_waiting"]),
        )

    async def queue_counts_list(self) -> list[dict[str, Any]]:
        """Per-queue counts by state, oldest due age and settings, at a bounded cost whatever the table size.

        Exact while a state holds at most ``QUEUE_COUNT_CAP`` rows (read through the claim indexes); above
        that the leader's ``pgsched.queue_counts`` answers and ``counts_age_seconds`` says how old it is.
        The function ``pgsched.queue_counts_list`` keeps its plan bounded whatever the statistics, with JIT
        off (compiling the plan cost seconds on a busy server, for a query that runs in milliseconds).
        """
        async with self._cursor(2.0) as cur:
            await cur.execute(query("queue_counts_list"), {"cap": QUEUE_COUNT_CAP, "now": self._clock.db_now()})
            return list(await cur.fetchall())

    async def job_totals_snapshot(self) -> JobTotals:
        """The cluster-wide job counters and histogram buckets (small tables the leader adds to), for /metrics."""
        async with self._cursor(2.0) as cur:
            await cur.execute(query("job_totals_list"))
            totals = list(await cur.fetchall())
            await cur.execute(query("job_total_buckets_list"))
            buckets = list(await cur.fetchall())
            await cur.execute(query("job_stats_watermark_get"))
            mark = await cur.fetchone()
        return JobTotals(totals, buckets, mark["upto"] if mark else None)

    async def table_bloat_list(self) -> list[dict[str, Any]]:
        async with self._cursor() as cur:
            await cur.execute(query("table_bloat_list"))
            return list(await cur.fetchall())

    async def long_transaction_list(self, threshold_seconds: float) -> list[dict[str, Any]]:
        async with self._cursor() as cur:
            await cur.execute(
                query("long_transaction_list"), {"threshold": threshold_seconds, "now": self._clock.db_now()}
            )
            return list(await cur.fetchall())
