"""The leader's vacuum of the live partitions, beside autovacuum.

A job that passes leaves a dead row version in ``pgsched.jobs_queued`` (its claim moves it to jobs_running) and one
in ``pgsched.jobs_running`` (its finish moves it to jobs_done), and a dead entry in each of their indexes. Autovacuum
visits a database at most once per ``autovacuum_naptime`` (a minute by default): at a few thousand jobs a second that
is hundreds of thousands of dead tuples between its visits, so both partitions and their indexes grow, and every
scan of them slows (the claim steps over dead index entries; the queue counts read both tables).

The leader looks every ``vacuum_interval_seconds`` (2 s; 0 turns it off) and vacuums a live partition whose dead
tuples passed a bound (at least ``MIN_DEAD`` and ``DEAD_SHARE`` of its live ones). ``VACUUM (SKIP_LOCKED)`` on a
connection of its own, in the background: cron and the reaper never wait on it, and a vacuum already running on the
table (autovacuum's, an operator's) means there is nothing to do this time. VACUUM takes no lock the hot path
conflicts with. A role that may not vacuum the table (neither its owner nor, from PostgreSQL 17, holding MAINTAIN)
is told once in the log and leaves the table to autovacuum.

Service layer, beside ``pgsched.maintenance``; the scheduler runs it while it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from pgsched import db
from pgsched.config import Settings
from pgsched.errors import PgschedError
from pgsched.metrics import LIVE_VACUUMS
from pgsched.queries import query

__all__ = ["DEAD_SHARE", "MIN_DEAD", "LiveVacuum"]

log = logging.getLogger(__name__)

MIN_DEAD = 1000  # below this many dead tuples a vacuum is not worth its scan
DEAD_SHARE = 0.2  # and not below this share of the live tuples (a large backlog can carry some)
_CONNECT_SECONDS = 5.0


class LiveVacuum:
    """``tick(now)`` from the leader's loop starts a round in the background when one is due and none is running;
    ``round()`` is one round, awaited; ``close()`` when leadership ends."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = settings.require_dsn()
        self._interval = settings.vacuum_interval_seconds
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[list[str]] | None = None
        self._next = 0.0
        self._refused: set[str] = set()  # tables this role may not vacuum, told once

    def tick(self, now: float) -> None:
        if self._interval <= 0 or now < self._next or (self._task is not None and not self._task.done()):
            return
        self._next = now + self._interval
        self._task = asyncio.create_task(self._round_logged(), name="pgsched-live-vacuum")

    async def round(self) -> list[str]:
        """Vacuum each live partition past the bound; returns the names of those vacuumed (or skipped as locked)."""
        conn = await self._connection()
        async with conn.cursor() as cur:
            await cur.execute(query("live_partitions_to_vacuum"), {"min_dead": MIN_DEAD, "share": DEAD_SHARE})
            due = await cur.fetchall()
        done = []
        for name, dead, live, may_vacuum in due:  # only jobs_queued and jobs_running: the query names them
            if not may_vacuum:
                self._refuse(name)
                continue
            started = time.monotonic()
            await conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(sql.Identifier("pgsched", name)))
            LIVE_VACUUMS.labels(name).inc()
            log.debug(
                "vacuumed a live partition",
                extra={
                    "event": "live_vacuum",
                    "table": name,
                    "dead": dead,
                    "live": live,
                    "ms": round(1000 * (time.monotonic() - started), 1),
                },
            )
            done.append(name)
        return done

    async def close(self) -> None:
        """Stop a round in flight and close the connection (psycopg asks the server to cancel a statement whose
        task is cancelled, so no VACUUM outlives the term)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _round_logged(self) -> list[str]:
        """A round whose failure is logged, never raised: the next tick tries again on a new connection."""
        try:
            return await self.round()
        except (psycopg.Error, PgschedError, OSError) as exc:  # the database away, a connect refused or timed out
            log.warning("live partition vacuum failed", extra={"event": "live_vacuum_failed", "error": str(exc)})
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
            return []

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            # Unprepared: it may reach PostgreSQL through a transaction pooler, where VACUUM works as well.
            self._conn = await db.session_async(self._dsn, "vacuum", within=_CONNECT_SECONDS, prepare_threshold=None)
        return self._conn

    def _refuse(self, name: str) -> None:
        if name in self._refused:
            return
        self._refused.add(name)
        log.warning(
            "this role may not vacuum a live partition; autovacuum alone keeps it",
            extra={"event": "live_vacuum_refused", "table": f"pgsched.{name}"},
        )
