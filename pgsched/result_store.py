"""ResultStore: waits for one job to end and returns its result (``Pgsched.result``), sync and async.

Data layer. Each wait holds its own connection, never a pooled one (it LISTENs): LISTEN
pgsched_done, list the session in ``pgsched.result_waiters``, read the job; then wait for a
notification carrying the job id, and re-read the row on one, or when ``recheck`` seconds passed
without one. NOTIFY is a hint: a job ended by a statement that sends none (job_complete_many,
a plain UPDATE), or by a finish statement whose snapshot predates the waiter's row, is still seen
by the re-read. The waiter's row is removed on every exit (result, error, timeout, cancellation);
if the process dies first, the leader's pruner removes it. A lost connection raises
``DatabaseUnavailable`` (no reconnect: the job is unaffected, call again). psycopg errors never
leave this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from pgsched import db
from pgsched.errors import JobCancelled, JobFailed, JobNotFound, ResultTimeout, ValidationError
from pgsched.queries import query

__all__ = ["DONE_CHANNEL", "MAX_WAIT_SECONDS", "ResultStore"]

DONE_CHANNEL = "pgsched_done"
MAX_WAIT_SECONDS = 3600.0
_JOB_ID_MAX = 2**63 - 1
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(DONE_CHANNEL))


def _check(job_id: object, timeout: object, recheck: object) -> None:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or not 1 <= job_id <= _JOB_ID_MAX:
        raise ValidationError("job_id", f"must be a positive integer, got {job_id!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_WAIT_SECONDS:
        raise ValidationError("timeout", f"must be over 0 and at most {MAX_WAIT_SECONDS:g} seconds, got {timeout!r}")
    if isinstance(recheck, bool) or not isinstance(recheck, int | float) or not recheck > 0:
        raise ValidationError("recheck", f"must be a positive number of seconds, got {recheck!r}")


def _outcome(job_id: int, row: Mapping[str, Any] | None) -> tuple[bool, Any]:
    """(True, result) once the job succeeded, (False, None) while it has not ended; raises when it
    ended otherwise (dead, cancelled) or does not exist."""
    if row is None:
        raise JobNotFound(job_id)
    state = row["state"]
    if state == "dead":
        entry = row["last_error"] if isinstance(row["last_error"], dict) else {}
        raise JobFailed(job_id, entry.get("error"), entry)
    if state == "cancelled":
        raise JobCancelled(job_id)
    return (True, row["result"]) if state == "succeeded" else (False, None)


class _Clock:
    """The two deadlines of a wait: the caller's timeout, and the next re-read without a notification."""

    def __init__(self, job_id: int, timeout: float, recheck: float) -> None:
        self.job_id, self.timeout, self.recheck = job_id, timeout, recheck
        self.deadline = time.monotonic() + timeout
        self.next_read = 0.0

    def read_done(self) -> None:
        self.next_read = time.monotonic() + self.recheck

    def read_due(self) -> bool:
        return time.monotonic() >= self.next_read

    def wait_seconds(self) -> float:
        """How long to wait for a notification; raises ResultTimeout once the caller's time is up."""
        now = time.monotonic()
        if now >= self.deadline:
            raise ResultTimeout(self.job_id, self.timeout)
        return max(0.0, min(self.deadline, self.next_read) - now)


class ResultStore:
    """Waits on job results over connections of its own; holds nothing between calls."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def result_wait(self, job_id: int, *, timeout: float, recheck: float) -> Any:
        """The job's result once it succeeded; ``JobFailed``, ``JobCancelled``, ``JobNotFound`` or
        ``ResultTimeout`` otherwise."""
        _check(job_id, timeout, recheck)
        clock = _Clock(job_id, float(timeout), float(recheck))
        params, key = {"job_id": job_id}, str(job_id)
        with db.connect(self._dsn, "result") as conn, db.translate_errors():
            conn.execute(_LISTEN)
            conn.execute(query("result_waiter_add"), params)
            try:
                while True:
                    ended, result = _outcome(job_id, conn.execute(query("result_get"), params).fetchone())
                    if ended:
                        return result
                    clock.read_done()
                    while not self._heard(conn, key, clock.wait_seconds()) and not clock.read_due():
                        continue
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(query("result_waiter_remove"), params)

    async def result_wait_async(
        self,
        job_id: int,
        *,
        timeout: float,  # noqa: ASYNC109 - mirrors result_wait()
        recheck: float,
    ) -> Any:
        """``result_wait`` for async code: the same outcomes, without blocking the event loop."""
        _check(job_id, timeout, recheck)
        clock = _Clock(job_id, float(timeout), float(recheck))
        params, key = {"job_id": job_id}, str(job_id)
        conn = await db.connect_async(self._dsn, "result")
        try:
            async with db.translate_async_errors():
                await conn.execute(_LISTEN)
                await conn.execute(query("result_waiter_add"), params)
                try:
                    while True:
                        cur = await conn.execute(query("result_get"), params)
                        ended, result = _outcome(job_id, await cur.fetchone())
                        if ended:
                            return result
                        clock.read_done()
                        while not await self._heard_async(conn, key, clock.wait_seconds()) and not clock.read_due():
                            continue
                finally:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute(query("result_waiter_remove"), params)
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    @staticmethod
    def _heard(conn: psycopg.Connection[Any], key: str, seconds: float) -> bool:
        """Wait up to ``seconds`` for a pgsched_done notification about this job (others are skipped)."""
        with contextlib.closing(conn.notifies(timeout=seconds)) as notifies:
            return any(n.channel == DONE_CHANNEL and n.payload == key for n in notifies)

    @staticmethod
    async def _heard_async(conn: psycopg.AsyncConnection[Any], key: str, seconds: float) -> bool:
        async with contextlib.aclosing(conn.notifies(timeout=seconds)) as notifies:
            async for n in notifies:
                if n.channel == DONE_CHANNEL and n.payload == key:
                    return True
        return False
