"""RetentionStore: list, set and unset how long a queue keeps its finished jobs (``pgsched.retention``), and how
far the time partitions of finished jobs reach.

Data layer: the only code that runs ``sql/retention.sql``. Input is checked by ``pgsched.retention`` before it
reaches the database; psycopg errors stop here. A change applies to jobs that finish afterwards: a job's
``purge_at`` (its time partition) is fixed when it finishes, and rows already finished are not re-timed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.queries import query
from pgsched.retention import (
    DEFAULTS_QUEUE,
    HistoryHorizon,
    RetentionNotFound,
    RetentionRule,
    validate_final_state,
    validate_keep_seconds,
    validate_retention_queue,
)

__all__ = ["DEFAULT_ROWS_CAP", "RetentionStore"]

# The doctor counts the rows waiting in jobs_done_default up to this (an exact count of a big one costs a scan).
DEFAULT_ROWS_CAP = 100_000


class RetentionStore:
    """Retention per queue and final state."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        with db.translated(field="queue"):
            async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur

    async def retention_list(self, queue: str | None = None) -> list[RetentionRule]:
        """Every row (defaults first); with ``queue``, the retention its jobs get per final state and where from."""
        if queue is not None and queue != DEFAULTS_QUEUE:
            validate_retention_queue(queue)
        async with self._cursor() as cur:
            if queue is None:
                await cur.execute(query("retention_list"))
            else:
                await cur.execute(query("retention_effective_list"), {"queue": queue})
            return [RetentionRule.from_row(r) for r in await cur.fetchall()]

    async def retention_set(self, queue: str, state: str, keep_seconds: float) -> RetentionRule:
        """Keep the queue's jobs finished in ``state`` for ``keep_seconds`` (jobs that finish from now on)."""
        params = {
            "queue": validate_retention_queue(queue),
            "state": str(validate_final_state(state)),
            "keep_seconds": validate_keep_seconds(keep_seconds),
            "now": self._clock.db_now(),
        }
        async with self._cursor() as cur:
            await cur.execute(query("retention_set"), params)
            row = await cur.fetchone()
        assert row is not None
        return RetentionRule.from_row(row)

    async def retention_unset(self, queue: str, state: str) -> RetentionRule:
        """Remove the queue's own retention for ``state``; returns what it was. RetentionNotFound when it had none."""
        params = {"queue": validate_retention_queue(queue), "state": str(validate_final_state(state))}
        async with self._cursor() as cur:
            await cur.execute(query("retention_unset"), params)
            row = await cur.fetchone()
        if row is None:
            raise RetentionNotFound(queue, state)
        return RetentionRule.from_row(row)

    async def history_horizon_get(self, *, now: datetime | None = None) -> HistoryHorizon:
        async with self._cursor() as cur:
            await cur.execute(query("history_horizon_get"), {"now": now, "cap": DEFAULT_ROWS_CAP})
            row = await cur.fetchone()
        assert row is not None
        return HistoryHorizon(
            width_seconds=row["width_seconds"],
            partitions_ahead=row["partitions_ahead"],
            covered_until=row["covered_until"],
            default_rows=row["default_rows"],
            longest_keep_seconds=float(row["longest_keep_seconds"]),
            longest_queue=row["longest_queue"],
            longest_state=row["longest_state"],
        )
