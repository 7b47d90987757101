"""Leader-only maintenance: the Reaper re-queues jobs of lost workers, the Pruner drops old rows (whole time
partitions of finished jobs past their retention, result waiters whose session is gone) and then refreshes
``pgsched.queue_counts``, which the API reads when a state holds too many rows to count per request.

Service layer. Both run on the leader's connection (see ``pgsched.leader``) and are idempotent
in SQL: the reaper's updates are fenced on (id, lease, state = 'running'), and it charges a loss only to
jobs the lost worker had published as started (see the README, "Fair blame").

A worker counts as lost when its registry row is gone, its heartbeat is older than the lease
(hung or cut off), or its liveness lock is free and its heartbeat is older than two heartbeat
intervals (process or connection died; the grace lets a worker ride out a momentary reconnect).
Heartbeat ages count from the last database restart when that is later: right after a restart every
worker's lock is free until it reconnects (within a heartbeat), and none of them is dead for that.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import db
from pgsched.config import Settings
from pgsched.history_counts import HistoryCounter
from pgsched.job_row import JobState
from pgsched.job_stats import JobStatsRollup
from pgsched.metrics import JOBS_EXPIRED
from pgsched.queries import query
from pgsched.retention import HISTORY_MAX_AHEAD

__all__ = ["Pruner", "Reaper"]

log = logging.getLogger(__name__)

_PRUNE_BATCH = 1000
_PRUNE_MAX_BATCHES = 50
_HISTORY_MAX_STEPS = 32
# A round's partition DDL stops after this long (a step takes ~0.2 s): the leader's loop fires cron and reaps between
# rounds, so a first round facing dozens of partitions to create must not hold them up; it goes on next loop.
_HISTORY_ROUND_SECONDS = 0.5
# Sweeps over every row of a table (edges, workflows) look at this many batches per round at most, going on from
# where the last round stopped: a round's work is bounded whatever the table's size.
_SWEEP_BATCHES = 10


class Reaper:
    """Re-queues (or buries) running jobs whose worker is gone, then removes dead workers' rows."""

    def __init__(self, settings: Settings) -> None:
        self._lease = settings.lease_seconds
        self._grace = 2 * settings.heartbeat_seconds
        self._max_losses = settings.max_worker_losses

    async def reap(self, conn: psycopg.AsyncConnection[Any]) -> dict[int, JobState]:
        params = {"lease": self._lease, "grace": self._grace, "max_losses": self._max_losses}
        async with conn.cursor(row_factory=dict_row) as cur:
            await db.execute_moving_async(cur, query("job_reap_lost"), params)
            reaped = {r["id"]: JobState(r["state"]) for r in await cur.fetchall()}
            await cur.execute(query("worker_delete_dead"), {"lease": self._lease, "grace": self._grace})
            gone = [r["id"] for r in await cur.fetchall()]
        await self.expire(conn)
        if reaped:
            log.warning(
                "re-queued jobs of lost workers",
                extra={
                    "event": "jobs_reaped",
                    "jobs": sorted(reaped),
                    "dead": [i for i, s in reaped.items() if s == "dead"],
                },
            )
        if gone:
            log.info("removed dead workers", extra={"event": "workers_removed", "workers": gone})
        return reaped

    async def expire(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> int:
        """End queued jobs past their ``expires_at`` (cancelled, errors entry of kind "expired"); returns how many."""
        total = 0
        async with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(_PRUNE_MAX_BATCHES):
                # Unprepared: a plan kept from a table with no queued job read them all through another index.
                await db.execute_moving_async(
                    cur, query("job_expire_due"), {"now": now, "limit": _PRUNE_BATCH}, prepare=False
                )
                rows = await cur.fetchall()
                for row in rows:
                    JOBS_EXPIRED.labels(row["queue"], row["task"]).inc()
                total += len(rows)
                if len(rows) < _PRUNE_BATCH:
                    break
        if total:
            log.info("expired jobs not started in time", extra={"event": "jobs_expired", "expired": total})
        return total


class Pruner:
    """Drops whole time partitions of finished jobs past their retention (and creates those ahead), empties the
    default partition in small batches, and removes stale result waiters."""

    def __init__(self, settings: Settings) -> None:
        self._retention = {
            JobState.SUCCEEDED: settings.retention_succeeded_seconds,
            JobState.CANCELLED: settings.retention_cancelled_seconds,
            JobState.DEAD: settings.retention_dead_seconds,
        }
        self._width = settings.history_partition_seconds
        self._sweeps: dict[str, int] = {}  # where each sweep goes on from (the last id it looked at)
        self.history_behind = False  # the last history_maintain stopped with partitions left to create or drop

    async def prune(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> int:
        """One round; returns the jobs deleted one by one (from the default partition): whole partitions are logged."""
        await JobStatsRollup().rollup(conn, now=now)  # chart history first, before old rows go
        await self._retention_defaults_set(conn)
        row = await self.history_maintain(conn, now=now)
        if row["dropped"] or row["created"] or row["busy"]:
            log.info(
                "maintained history partitions",
                extra={
                    "event": "history_partitions",  # not "created": a LogRecord attribute
                    "partitions_created": row["created"],
                    "partitions_dropped": row["dropped"],
                    "partitions_busy": row["busy"],
                },
            )
        deleted = await self._batches(conn, "history_default_prune", now=now)
        if deleted:
            log.info(
                "pruned finished jobs of the default partition", extra={"event": "jobs_pruned", "deleted": deleted}
            )
        await self._sweep(conn, "job_dependency_prune")
        await self.run_key_prune(conn, now=now)
        await self.result_waiter_prune(conn)
        await self.workflow_prune(conn, now=now)
        await self.queue_counts_refresh(conn, now=now)
        return deleted

    async def prepare(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> dict[str, int]:
        """The history part of a leader's first round, ahead of any worker (``pgsched migrate`` runs it): write the
        configured retention defaults, as every round does, and create every time partition ahead. A first leader then
        has no DDL to do beside the workers (each create locks the default partition and invalidates the cached plans
        of every statement on pgsched.jobs). ``conn`` autocommits; one DDL a transaction, as in the leader's rounds."""
        await self._retention_defaults_set(conn)
        total = await self.history_maintain(conn, now=now)
        while self.history_behind:
            more = await self.history_maintain(conn, now=now)
            total = {key: total[key] + more[key] for key in total}
        return total

    async def _retention_defaults_set(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Write the configured retention of each final state as the defaults of pgsched.retention (queue '*')."""
        states = list(self._retention)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query("retention_defaults_set"),
                {"states": [str(s) for s in states], "seconds": [float(self._retention[s]) for s in states]},
            )

    async def history_maintain(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> dict[str, int]:
        """Drop passed time partitions and create those ahead, one DDL per transaction (``conn`` autocommits): a
        create locks the default partition, which every statement on pgsched.jobs needs, until its transaction
        ends, and so does a detach, whose table the next step drops (migration 0038). At most _HISTORY_MAX_STEPS
        and about _HISTORY_ROUND_SECONDS a call; ``history_behind`` then says there is more to do, and the leader
        calls again between its rounds."""
        total = {"created": 0, "dropped": 0, "busy": 0}
        deadline = time.monotonic() + _HISTORY_ROUND_SECONDS
        self.history_behind = False
        async with conn.cursor(row_factory=dict_row) as cur:
            for step in range(_HISTORY_MAX_STEPS):
                if step and time.monotonic() > deadline:
                    self.history_behind = True
                    break
                await cur.execute(
                    query("history_maintain_step"), {"width": self._width, "now": now, "max_ahead": HISTORY_MAX_AHEAD}
                )
                row = await cur.fetchone()
                assert row is not None
                for key in total:
                    total[key] += int(row[key])
                if not (row["created"] or row["dropped"] or row["removed"]):
                    break
            else:
                self.history_behind = True  # _HISTORY_MAX_STEPS done, and the last one still had work
        return total

    @staticmethod
    async def _batches(conn: psycopg.AsyncConnection[Any], name: str, **params: Any) -> int:
        total = 0
        async with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(_PRUNE_MAX_BATCHES):
                await cur.execute(query(name), {**params, "limit": _PRUNE_BATCH})
                row = await cur.fetchone()
                deleted = int(row["deleted"]) if row else 0
                total += deleted
                if deleted < _PRUNE_BATCH:
                    break
        return total

    async def run_key_prune(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> int:
        """Delete run_keys rows whose holder no longer holds the key (its scope ended), in bounded batches.
        Only the pruner's bookkeeping: a conflicting enqueue takes a stale key over anyway."""
        return await self._batches(conn, "run_key_prune", now=now)

    async def workflow_prune(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> int:
        """Delete workflows none of whose steps is left (each step went with its own retention): the next part of
        the sweep over all workflows."""
        return await self._sweep(conn, "workflow_prune", now=now)

    async def _sweep(self, conn: psycopg.AsyncConnection[Any], name: str, **params: Any) -> int:
        """Run the sweep ``name`` on from where its last call stopped, for at most _SWEEP_BATCHES batches or to the
        end of the table (the next call starts again from the beginning); returns the rows deleted."""
        total = 0
        async with conn.cursor(row_factory=dict_row) as cur:
            for _ in range(_SWEEP_BATCHES):
                after = self._sweeps.get(name, 0)
                await cur.execute(query(name), {**params, "after": after, "limit": _PRUNE_BATCH})
                row = await cur.fetchone()
                total += int(row["deleted"]) if row else 0
                last = row["last_id"] if row else None
                self._sweeps[name] = 0 if last is None else int(last)
                if last is None:
                    break
        return total

    async def queue_counts_refresh(self, conn: psycopg.AsyncConnection[Any], *, now: Any = None) -> None:
        """Refresh pgsched.queue_counts once per prune interval instead of counting per API request: the live jobs and
        the history counters (see ``pgsched.history_counts``), never the whole history."""
        await HistoryCounter().refresh(conn, now=now)

    async def result_waiter_prune(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Delete result waiters whose session is gone (a waiting process died); returns how many."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("result_waiter_prune"))
            row = await cur.fetchone()
        deleted = int(row["deleted"]) if row else 0
        if deleted:
            log.info("removed stale result waiters", extra={"event": "result_waiters_pruned", "deleted": deleted})
        return deleted
