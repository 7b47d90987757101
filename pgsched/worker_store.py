"""WorkerStore: the worker's hot-path SQL (claim, finish, release, waiting marks, cancel polls).

Data layer. Runs on two dedicated connections with server-side prepared statements:
one for the producer's claims, one for the completer's writes and control queries, so a claim
and a flush overlap. Both commit with ``synchronous_commit = off``: a database crash may lose the
last moments of claims and completions; the worker repairs both (it keeps completions until the
WAL flush passes them and re-sends them after a reconnect, and hands back running rows it does not
hold: ``job_reconcile``), and every write is fenced on the claim's lease. ``reconnects`` counts the
connections opened after the first ones. Enqueues and transactional tasks keep full durability. They also keep one
generic plan per prepared statement (planning the claim costs more than running it).
A broken connection raises ``DatabaseUnavailable`` and is reopened on the next call. Through a transaction-mode
pooler the links prepare nothing (unless ``PGSCHED_PREPARED_STATEMENTS=on``) and keep the server's session
defaults (full durability, custom plans): a session setting would stay on a server session other clients share.
psycopg errors never leave this module. Transactional tasks borrow connections from a small pool
(``transaction()``) and finish their job inside it (``job_finish_in``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.clock import Clock, SystemClock
from pgsched.errors import DatabaseUnavailable
from pgsched.pg_arrays import BoolArray, Float8Array, Int4Array, Int8Array, TextArray
from pgsched.queries import query

__all__ = ["ClaimedJob", "Finished", "Outcome", "Report", "WorkerStore"]

log = logging.getLogger(__name__)


class ClaimedJob(NamedTuple):
    """A claimed attempt: the columns the worker needs, in ``job_claim_batch``'s RETURNING order.

    Immutable records built once per job are NamedTuples: a frozen dataclass costs about 1.5 µs more
    to build (one ``object.__setattr__`` per field), a tenth of the worker's CPU per no-op job.
    """

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    attempt: int
    timeout: float | None
    waited: float
    limited: bool = False  # claimed under a queue or key limit: its end frees a slot
    lease: int = 0  # the claim's token: every write of this attempt is fenced on (id, lease)
    isolate: bool = False  # one charged worker loss short of the limit: runs alone, its start published first
    started: bool = False  # the claim published it as started (it fills a free slot at once)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SNOOZED = "snoozed"  # queued again after ``delay`` with the attempt given back (dead past ``snooze_limit``)


class Finished(NamedTuple):
    """The end of one attempt. ``result`` is JSON text; ``error`` an entry of ``jobs.errors``."""

    id: int
    attempt: int
    lease: int
    outcome: Outcome
    result: str | None = None
    error: dict[str, Any] | None = None
    delay: float = 0.0
    final: bool = False
    snooze_limit: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """The latest progress (``fraction`` None: none since the last write) and lease extension (``extend``
    seconds, None: no heartbeat since the last write) of one running attempt (id, lease)."""

    id: int
    lease: int
    fraction: float | None = None
    message: str | None = None
    extend: float | None = None


class _Link:
    """One dedicated autocommit connection, opened on demand and dropped when it breaks."""

    def __init__(self, dsn: str, role: str, on_broken: Callable[[], None] | None = None) -> None:
        self._dsn = dsn
        self._role = role
        self._on_broken = on_broken
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._opening = asyncio.Lock()  # tasks sharing the link (the writes link has four) open one connection
        self.opened = 0

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            with db.translated(field="result"):
                if self._conn is None or self._conn.closed:
                    async with self._opening:
                        if self._conn is None or self._conn.closed:
                            self._conn = await self._open()
                yield self._conn
        except DatabaseUnavailable:
            await self.close()
            if self._on_broken is not None:
                self._on_broken()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn = await db.session_async(self._dsn, self._role, prepare_threshold=0)
        try:
            if not db.behind_pooler(conn):  # through a pooler, session settings would leak to others
                await conn.execute(query("worker_session_setup"))
        except BaseException:  # stopped or failed before self._conn holds it: not left open
            await conn.close()
            raise
        set_json_loads(_json_loads, conn)
        self.opened += 1
        return conn


def _json_loads(data: str | bytes) -> Any:
    """jsonb from the worker's links (claimed args): decoded to str first (``json.loads`` on bytes
    guesses the encoding, twice the cost), and the empty object of argument-less jobs without parsing."""
    text = data.decode() if isinstance(data, bytes) else data
    return {} if text == "{}" else json.loads(text)


def _finish_params(items: Sequence[Finished], now: Any) -> dict[str, Any]:
    """The finish batch as binary arrays built in one pass each (pgsched.pg_arrays: psycopg's list dumper cost
    8 µs a job here)."""
    return {
        "ids": Int8Array.of([f.id for f in items]),
        "leases": Int8Array.of([f.lease for f in items]),
        "outcomes": TextArray.of([f.outcome.value for f in items]),
        "results": TextArray.of([f.result for f in items]),
        "errors": TextArray.of([None if f.error is None else json.dumps(f.error) for f in items]),
        "delays": Float8Array.of([f.delay for f in items]),
        "finals": BoolArray.of([f.final for f in items]),
        "snooze_limits": Int4Array.of([f.snooze_limit for f in items]),
        "now": now,
    }


class WorkerStore:
    """The worker's database access. ``close()`` is safe to call twice."""

    def __init__(
        self,
        dsn: str,
        *,
        clock: Clock | None = None,
        pool_size: int = 4,
        on_broken: Callable[[], None] | None = None,  # a link broke: the database may be gone
    ) -> None:
        self._dsn = dsn
        self._clock = clock or SystemClock()
        self._claims = _Link(dsn, "worker", on_broken)
        self._writes = _Link(dsn, "worker", on_broken)
        self._pool_size = pool_size
        self._pool: AsyncConnectionPool | None = None

    async def close(self) -> None:
        await self._claims.close()
        await self._writes.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await pool.close()

    @property
    def reconnects(self) -> int:
        """Connections opened after the first one of each link: each may follow a database crash."""
        return max(0, self._claims.opened - 1) + max(0, self._writes.opened - 1)

    # ---------------------------------------------------------------- claims (producer connection)
    async def job_claim_batch(
        self, queues: Sequence[str], limit: int, worker_id: int, *, running: Sequence[int] = (), free: int = 0
    ) -> list[ClaimedJob]:
        """Claim for a registered worker (none when its row is gone); publishes ``running`` plus the
        first ``free`` claimed jobs as started, and returns those first."""
        params = {
            "queues": list(queues),
            "limit": limit,
            "worker_id": worker_id,
            "now": self._clock.db_now(),
            "running": list(running),
            "free": free,
        }
        async with self._claims.use() as conn:
            cur = await db.execute_moving_async(
                conn, query("job_claim_batch"), params, binary=True
            )  # no text parsing of numbers
            jobs = [ClaimedJob(*row) for row in await cur.fetchall()]
        jobs.sort(key=lambda job: not job.started)
        return jobs

    async def job_trace_list(self, ids: Sequence[int]) -> dict[int, Mapping[str, str]]:
        """The trace context each of these jobs carries (only those that carry one): read while tracing is on."""
        async with self._claims.use() as conn:
            cur = await conn.execute(query("job_trace_list"), {"ids": list(ids)})
            return {row[0]: row[1] for row in await cur.fetchall() if isinstance(row[1], dict)}

    async def worker_started_publish(self, worker_id: int, started: Sequence[int]) -> bool:
        """Publish the started jobs now (acknowledged before the caller starts one); False when the row is gone."""
        async with self._claims.use() as conn:
            cur = await conn.execute(
                query("worker_started_publish"), {"worker_id": worker_id, "started": list(started)}
            )
            return await cur.fetchone() is not None

    async def job_reconcile(self, worker_id: int, held: Sequence[tuple[int, int]]) -> list[int]:
        """Hand back uncharged every running row under ``worker_id`` whose (id, lease) is not in ``held``."""
        params = {"worker_id": worker_id, "ids": [h[0] for h in held], "leases": [h[1] for h in held]}
        async with self._claims.use() as conn:
            cur = await db.execute_moving_async(conn, query("job_reconcile"), params)
            return [row[0] for row in await cur.fetchall()]

    async def worker_wait_mark(self, worker_id: int, queues: Sequence[str]) -> None:
        async with self._claims.use() as conn:
            await conn.execute(query("worker_wait_mark"), {"worker_id": worker_id, "queues": list(queues)})

    async def worker_wait_clear(self, worker_id: int) -> None:
        async with self._claims.use() as conn:
            await conn.execute(query("worker_wait_clear"), {"worker_id": worker_id})

    async def job_next_due_in(self, queues: Sequence[str]) -> float | None:
        """Seconds until the next queued-but-not-due job of these queues; None when there is none."""
        async with self._claims.use() as conn:
            cur = await conn.execute(query("job_next_due_in"), {"queues": list(queues), "now": self._clock.db_now()})
            row = await cur.fetchone()
            return None if row is None or row[0] is None else float(row[0])

    # ---------------------------------------------------------------- writes (completer connection)
    async def job_finish_many(self, items: Sequence[Finished]) -> dict[int, str]:
        """Write finished attempts; returns the accepted ids with their new state (the fence held)."""
        if not items:
            return {}
        async with self._writes.use() as conn:
            cur = await db.execute_moving_async(
                conn, query("job_finish_many"), _finish_params(items, self._clock.db_now())
            )
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def job_progress_many(self, reports: Sequence[Report]) -> set[int]:
        """Write progress and heartbeat reports of running attempts; returns the ids whose fence held."""
        if not reports:
            return set()
        params = {
            "ids": [r.id for r in reports],
            "leases": [r.lease for r in reports],
            "fractions": [r.fraction for r in reports],
            "messages": [r.message for r in reports],
            "extends": [r.extend for r in reports],
            "now": self._clock.db_now(),
        }
        async with self._writes.use() as conn:
            cur = await db.execute_moving_async(conn, query("job_progress_many"), params)
            return {row[0] for row in await cur.fetchall()}

    async def job_release_leased(self, jobs: Sequence[tuple[int, int]], *, delay: float | None = None) -> set[int]:
        """Hand (id, lease) pairs back to the queue uncharged, in their old place (or ``delay`` seconds on); fenced."""
        if not jobs:
            return set()
        params = {"ids": [j[0] for j in jobs], "leases": [j[1] for j in jobs], "delay": delay}
        async with self._writes.use() as conn:
            cur = await db.execute_moving_async(conn, query("job_release_leased"), params)
            return {row[0] for row in await cur.fetchall()}

    async def job_cancel_requested(self, held: Sequence[tuple[int, int]]) -> list[int]:
        """Which of these (id, lease) attempts have a pending cancel request."""
        if not held:
            return []
        params = {"ids": [h[0] for h in held], "leases": [h[1] for h in held]}
        async with self._writes.use() as conn:
            cur = await conn.execute(query("job_cancel_requested"), params)
            return [row[0] for row in await cur.fetchall()]

    async def wal_positions(self) -> tuple[int, int]:
        """(inserted, flushed) WAL positions in bytes, read on the completer's connection."""
        async with self._writes.use() as conn:
            cur = await conn.execute(query("wal_positions"))
            row = await cur.fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

    # ---------------------------------------------------------------- transactional tasks
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection inside a transaction: commits on a clean exit, rolls back on an exception."""
        pool = await self._open_pool()
        # Other errors are the task's own (it ran SQL on this connection) and pass unchanged.
        with db.translated(only_connection=True):
            async with pool.connection() as conn, conn.transaction():
                yield conn

    async def job_finish_in(self, conn: psycopg.AsyncConnection[Any], item: Finished) -> bool:
        """Finish one attempt on the caller's transaction; False when the fence did not hold."""
        with db.translated(field="result"):
            cur = await db.execute_moving_async(
                conn, query("job_finish_many"), _finish_params([item], self._clock.db_now())
            )
            return await cur.fetchone() is not None

    async def _open_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            pool = db.async_pool(self._dsn, "worker", min_size=0, max_size=self._pool_size)
            with db.translated(field="result"):
                await pool.open()
            self._pool = pool
        return self._pool
