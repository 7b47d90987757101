"""ResultStore: waits for jobs to end and returns their results (``Pgsched.result``), sync and async.

Data layer. One store per client holds ONE listening connection (LISTEN pgsched_done) on a thread
of its own, shared by every wait of that client, sync or async; the waits' statements go through a
small pool. A wait lists the listener's session in ``pgsched.result_waiters`` and reads the job in
one statement, then sleeps until the listener hears the job's id, or ``recheck`` seconds pass (sooner
at first: ``EARLY_REREADS``), and re-reads the row. NOTIFY is a hint: a job ended by a statement that
sends none (a plain UPDATE), or by a finish statement whose snapshot predates the waiter's row, is
still seen by the re-read.

Connection loss: the listener reconnects with capped, jittered backoff, lists the jobs still
waited on under its new session, and wakes every wait so it re-reads at once. The waiter row of
the last wait on a job is removed on every exit (result, error, timeout, cancellation); rows of a
session that is gone are removed by the leader's pruner. psycopg errors never leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched import db
from pgsched.errors import (
    DatabaseUnavailable,
    JobCancelled,
    JobFailed,
    JobNotFound,
    ResultTimeout,
    ValidationError,
)
from pgsched.queries import query
from pgsched.retry import Backoff

__all__ = ["DONE_CHANNEL", "MAX_WAIT_SECONDS", "ResultStore"]

log = logging.getLogger(__name__)

DONE_CHANNEL = "pgsched_done"
MAX_WAIT_SECONDS = 3600.0
_JOB_ID_MAX = 2**63 - 1
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(DONE_CHANNEL))
_POLL_SECONDS = 0.5  # how often the listener thread looks up from the socket to see whether to stop
_BACKOFF_MAX_SECONDS = 5.0

Wake = Callable[[], None]
Row = Any  # a dict row (the pools use dict_row) or None


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


# Seconds after a wait is listed when it re-reads the job even without a notification, before every ``recheck``. A
# finish statement whose snapshot predates the waiter's row sends no NOTIFY for it, and it may still be committing
# when the wait's first read sees the job running: such a statement was already under way, so it ends within
# milliseconds (a large batch on a loaded server, a few hundred). Once a worker wrote an idle job's end at once, a
# no-op job's result() met that race in over 1 % of calls (p99 1,005 ms: the 1 s recheck) on the 2-core test VM.
EARLY_REREADS = (0.003, 0.01, 0.03, 0.1, 0.3)


class _Clock:
    """The deadlines of a wait: the caller's timeout, and the next re-read without a notification."""

    def __init__(self, job_id: int, timeout: float, recheck: float) -> None:
        self.job_id, self.timeout, self.recheck = job_id, timeout, recheck
        self.listed = time.monotonic()
        self.deadline = self.listed + timeout
        self._early = list(EARLY_REREADS)

    def wait_seconds(self) -> float:
        """How long to sleep before the next re-read; raises ResultTimeout once the caller's time is up."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            raise ResultTimeout(self.job_id, self.timeout)
        waited = now - self.listed
        while self._early and self._early[0] <= waited:
            del self._early[0]
        early = self._early[0] - waited if self._early else self.recheck
        return min(left, self.recheck, early)


class _DoneListener:
    """The shared LISTEN session: wakes the waits registered for a job id when its NOTIFY arrives.

    States: not started -> listening (``pid`` set) <-> reconnecting (``pid`` None) -> closed.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._watchers: dict[int, list[Wake]] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self.pid: int | None = None

    def start(self) -> int:
        """Connect and listen (once); returns the listening session's backend pid."""
        with self._lock:
            if self._thread is None:
                self._listen()
                self._thread = threading.Thread(target=self._run, name="pgsched-result-listener", daemon=True)
                self._thread.start()
            pid = self.pid
        if pid is None:
            raise DatabaseUnavailable("the result listener is reconnecting")
        return pid

    def watch(self, job_id: int, wake: Wake) -> None:
        with self._lock:
            self._watchers.setdefault(job_id, []).append(wake)

    def unwatch(self, job_id: int, wake: Wake) -> bool:
        """Forget one wait; True when it was the last on this job (its waiter row can go)."""
        with self._lock:
            waits = self._watchers.get(job_id, [])
            with contextlib.suppress(ValueError):
                waits.remove(wake)
            if waits:
                return False
            self._watchers.pop(job_id, None)
            return True

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=_POLL_SECONDS * 4)
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()

    def _listen(self) -> None:
        conn = db.connect(self._dsn, "result")
        conn.execute(_LISTEN)
        self._conn, self.pid = conn, conn.info.backend_pid

    def _run(self) -> None:
        backoff = Backoff(base=0.1, cap=_BACKOFF_MAX_SECONDS)
        while not self._closed.is_set():
            try:
                if self._conn is None:
                    self._listen()
                    self._relist()
                    backoff.reset()
                    self._wake_all()  # notifications may have been missed while away: re-read now
                assert self._conn is not None
                for notify in self._conn.notifies(timeout=_POLL_SECONDS):
                    if notify.payload.isdigit():
                        self._wake(int(notify.payload))
            except (psycopg.Error, DatabaseUnavailable) as exc:
                if self._closed.is_set():
                    return
                log.warning(
                    "result listener connection lost", extra={"event": "result_listener_lost", "error": str(exc)}
                )
                self._drop_connection()
                self._closed.wait(backoff.next())

    def _relist(self) -> None:
        """List every job still waited on under the new session (the old session's rows are pruned)."""
        with self._lock:
            ids = list(self._watchers)
        if ids and self._conn is not None:
            self._conn.execute(query("result_waiters_add"), {"job_ids": ids, "backend_pid": self.pid})

    def _drop_connection(self) -> None:
        conn, self._conn, self.pid = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _wake(self, job_id: int) -> None:
        with self._lock:
            waits = list(self._watchers.get(job_id, ()))
        for wake in waits:
            wake()

    def _wake_all(self) -> None:
        with self._lock:
            waits = [w for ws in self._watchers.values() for w in ws]
        for wake in waits:
            wake()


class ResultStore:
    """Result waits of one client: a shared listener plus small sync and async pools, opened on first use."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._listener = _DoneListener(dsn)
        self._pool: ConnectionPool | None = None
        self._apool: AsyncConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def result_wait(self, job_id: int, *, timeout: float, recheck: float) -> Any:
        """The job's result once it succeeded; ``JobFailed``, ``JobCancelled``, ``JobNotFound`` or
        ``ResultTimeout`` otherwise."""
        _check(job_id, timeout, recheck)
        clock = _Clock(job_id, float(timeout), float(recheck))
        with db.translated():
            pid = self._listener.start()
            woken = threading.Event()
            self._listener.watch(job_id, woken.set)
            try:
                row: Row = None
                with self._sync_pool().connection() as conn:
                    row = conn.execute(query("result_waiter_watch"), {"job_id": job_id, "backend_pid": pid}).fetchone()
                while True:
                    ended, result = _outcome(job_id, row)
                    if ended:
                        return result
                    woken.wait(clock.wait_seconds())
                    woken.clear()
                    with self._sync_pool().connection() as conn:
                        row = conn.execute(query("result_get"), {"job_id": job_id}).fetchone()
            finally:
                if self._listener.unwatch(job_id, woken.set):
                    with contextlib.suppress(psycopg.Error), self._sync_pool().connection() as conn:
                        conn.execute(query("result_waiter_remove"), {"job_id": job_id, "backend_pid": pid})

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
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(woken.set)

        with db.translated():
            pid = self._listener.pid or await asyncio.to_thread(self._listener.start)
            pool = await self._async_pool()
            self._listener.watch(job_id, wake)
            try:
                row: Row = None
                async with pool.connection() as conn:
                    cur = await conn.execute(query("result_waiter_watch"), {"job_id": job_id, "backend_pid": pid})
                    row = await cur.fetchone()
                while True:
                    ended, result = _outcome(job_id, row)
                    if ended:
                        return result
                    seconds = clock.wait_seconds()  # raises ResultTimeout, itself a TimeoutError: not in the suppress
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(seconds):
                            await woken.wait()
                    woken.clear()
                    async with pool.connection() as conn:
                        cur = await conn.execute(query("result_get"), {"job_id": job_id})
                        row = await cur.fetchone()
            finally:
                if self._listener.unwatch(job_id, wake):
                    with contextlib.suppress(psycopg.Error):
                        async with pool.connection() as conn:
                            await conn.execute(query("result_waiter_remove"), {"job_id": job_id, "backend_pid": pid})

    def _sync_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = db.sync_pool(self._dsn, "result", min_size=0, max_size=4)
                self._pool.open()
            return self._pool

    async def _async_pool(self) -> AsyncConnectionPool:
        if self._apool is None:
            pool = db.async_pool(self._dsn, "result", min_size=0, max_size=4)
            await pool.open()
            if self._apool is None:
                self._apool = pool
            else:
                await pool.close()
        return self._apool

    def close(self) -> None:
        self._listener.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
        await asyncio.to_thread(self.close)
