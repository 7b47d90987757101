"""Liveness: a process's row in ``pgsched.workers``, its session advisory lock and its heartbeat.

Data layer. On one dedicated, non-pooled connection the process registers (``worker_register``),
takes ``pg_try_advisory_lock(pgsched.lock_namespace(), id)`` and beats ``heartbeat_at`` every
``heartbeat_seconds``; each beat also publishes the ids of the jobs the worker has started
(``started``), so the reaper charges a loss only to those. Without a session (behind a transaction-mode
pooler, see ``pgsched.session_route``) it takes no lock: its row carries ``heartbeat_lease_seconds`` and the
reaper judges it by heartbeat age alone. A worker publishes the tasks it serves
(``pgsched.tasks``) right after it registers; they go with its row. The leader's reaper treats a free lock
or a stale heartbeat as death.

States: ``alive`` (lock held: ``ready`` is set) and ``lost`` (connection broken or a beat timed
out: ``ready`` is cleared, so the worker starts no new job). While lost it reconnects with capped
backoff (at most one heartbeat: after a database restart the reaper's grace is two), re-takes the
lock on its id, or registers a new row when its row was deleted or a lingering old session still
holds the lock. ``check_now()`` (another connection of the process broke) makes it beat at once, so a
crashed database clears ``ready`` within moments, not up to a heartbeat later. Between beats it also
watches its own idle connection: the server sends nothing unasked on it but the session's end (a
terminated backend, a shutdown or crash), so a readable socket makes it beat at once too, whether or not
another connection noticed (one opened after the end did not). ``close()`` deletes the row (clean shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from pgsched import db
from pgsched.errors import DatabaseUnavailable
from pgsched.queries import query
from pgsched.retry import Backoff

__all__ = ["Liveness"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0


def package_version() -> str | None:
    """The installed pgsched version every registered process reports (``pgsched.cluster.version``)."""
    try:
        return importlib.metadata.version("pgsched")
    except importlib.metadata.PackageNotFoundError:
        return None


class Liveness:
    """Registers, locks and beats for one process; ``run()`` until ``stop()``, then ``close()``."""

    def __init__(
        self,
        dsn: str,
        *,
        role: str = "worker",
        queues: Sequence[str] = (),
        concurrency: int = 0,
        version: str | None = None,
        heartbeat_seconds: float = 5.0,
        on_change: Callable[[], None] | None = None,
        started: Callable[[], list[int]] | None = None,
        tasks: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self._dsn = dsn
        self._role = role
        self._queues = list(queues)
        self._concurrency = concurrency
        self._version = version if version is not None else package_version()
        self._heartbeat = heartbeat_seconds
        self._on_change = on_change
        self._started = started
        self._tasks = tasks  # the task_publish parameters of the tasks this process serves
        self._heartbeat_lease: float | None = None  # set: no session, so no lock; alive by heartbeat age
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._id: int | None = None
        self._stopping = asyncio.Event()
        self._poke = asyncio.Event()  # beat now: set by check_now(), stop() and a readable idle connection
        self._why: str | None = None  # why the next beat comes early (logged)
        self.ready = asyncio.Event()

    @property
    def worker_id(self) -> int | None:
        """The current row id (it changes when the process had to register again)."""
        return self._id

    def reroute(self, dsn: str, *, heartbeat_lease: float | None) -> None:
        """Before ``open()``: connect to ``dsn``; with ``heartbeat_lease`` (seconds) take no lock (no session)."""
        self._dsn = dsn
        self._heartbeat_lease = heartbeat_lease

    async def open(self) -> int:
        """Connect, register and lock; raises ``DatabaseUnavailable`` when the database is unreachable."""
        await self._connect_and_lock()
        assert self._id is not None
        return self._id

    async def run(self) -> None:
        """Beat until ``stop()``; reconnect while the connection is lost."""
        backoff = Backoff(base=0.1, cap=min(_MAX_BACKOFF, self._heartbeat))  # at least once a heartbeat
        while not self._stopping.is_set():
            if self.ready.is_set():
                if await self._wait_beat():
                    return
                why, self._why = self._why, None
                try:
                    await self._beat()
                except DatabaseUnavailable as exc:
                    await self._lose(str(exc) if why is None else f"{exc} (beat early: {why})")
                    continue
                if why is not None:
                    log.info(
                        "liveness beat early", extra={"event": "liveness_checked", "worker_id": self._id, "why": why}
                    )
                continue
            try:
                await self._connect_and_lock()
                backoff.reset()
                log.info("liveness regained", extra={"event": "liveness_regained", "worker_id": self._id})
            except DatabaseUnavailable as exc:
                await self._drop_conn()
                delay = backoff.next()
                log.warning(
                    "liveness reconnect failed",
                    extra={"event": "liveness_retry", "error": str(exc), "retry_in": round(delay, 3)},
                )
                if await self._wait_stop(delay):
                    return

    def stop(self) -> None:
        self._stopping.set()
        self._poke.set()

    def check_now(self) -> None:
        """Another connection of this process broke: beat now instead of at the next heartbeat, so that a
        lost database clears ``ready`` (no new job starts) at once rather than up to a heartbeat later."""
        self._beat_early("another connection of this process broke")

    async def close(self) -> None:
        """Unregister (delete the row) and close the connection, which frees the lock. Safe twice."""
        self.stop()
        conn, self._conn = self._conn, None
        self.ready.clear()
        if conn is None or conn.closed:
            return
        try:
            if self._id is not None:
                async with asyncio.timeout(max(self._heartbeat, 5.0)):
                    await conn.execute(query("worker_unregister"), {"id": self._id})
                log.info("worker unregistered", extra={"event": "worker_unregistered", "worker_id": self._id})
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("could not unregister", extra={"event": "unregister_failed", "error": str(exc)})
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    # ---------------------------------------------------------------- internals
    def _beat_early(self, why: str) -> None:
        if self._why is None:
            self._why = why
        self._poke.set()

    async def _wait_beat(self) -> bool:
        """Wait a heartbeat, or less when ``check_now`` asks or the idle connection turns readable; True: stopping."""
        with self._watching(), contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._heartbeat):
                await self._poke.wait()
        self._poke.clear()
        return self._stopping.is_set()

    @contextlib.contextmanager
    def _watching(self) -> Iterator[None]:
        """While idle between beats, a readable connection (the server ended the session) asks for a beat now.
        The watch is on a duplicate descriptor of the socket, so it never meets psycopg's own waits on it."""
        conn = self._conn
        if conn is None or conn.closed:
            yield
            return
        loop = asyncio.get_running_loop()
        try:
            fd = os.dup(conn.fileno())
        except (OSError, psycopg.Error) as exc:  # no socket to watch (or no descriptor left): beat on time
            log.warning(
                "liveness cannot watch its connection", extra={"event": "liveness_unwatched", "error": str(exc)}
            )
            yield
            return
        try:
            loop.add_reader(fd, self._readable, loop, fd)
            try:
                yield
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)

    def _readable(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        loop.remove_reader(fd)  # level-triggered: once is enough
        self._beat_early("its idle connection turned readable (the session may have ended)")

    async def _wait_stop(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    async def _lose(self, reason: str) -> None:
        self.ready.clear()
        log.warning("liveness lost", extra={"event": "liveness_lost", "worker_id": self._id, "error": reason})
        await self._drop_conn()
        self._changed()

    async def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            # The old session's lock goes when its backend notices the connection is gone.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.close()

    def _beat_params(self) -> dict[str, Any]:
        return {"id": self._id, "started": None if self._started is None else self._started()}

    async def _beat(self) -> None:
        async with self._guard() as conn:
            cur = await conn.execute(query("worker_heartbeat"), self._beat_params())
            if await cur.fetchone() is None:
                log.warning("worker row deleted", extra={"event": "worker_row_missing", "worker_id": self._id})
                await self._register(conn)

    async def _connect_and_lock(self) -> None:
        conn = await self._connect()
        async with self._guard():
            if self._id is not None:
                cur = await conn.execute(query("worker_heartbeat"), self._beat_params())
                if await cur.fetchone() is not None and await self._lock(conn, self._id):
                    self.ready.set()
                    self._changed()
                    return
            await self._register(conn)

    async def _register(self, conn: psycopg.AsyncConnection[Any]) -> None:
        params = {
            "role": self._role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self._queues,
            "concurrency": self._concurrency,
            "version": self._version,
            "heartbeat_lease": self._heartbeat_lease,
        }
        cur = await conn.execute(query("worker_register"), params)
        row = await cur.fetchone()
        assert row is not None
        if not await self._lock(conn, row[0]):  # a fresh id: nobody else can hold it
            raise DatabaseUnavailable(f"could not take the liveness lock of new worker {row[0]}")
        if self._tasks:  # published once per id: the rows go with the worker's row
            await conn.execute(query("task_publish"), {**self._tasks, "worker_id": row[0]})
        self._id = int(row[0])
        self.ready.set()
        log.info("worker registered", extra={"event": "worker_registered", "worker_id": self._id})
        self._changed()

    async def _lock(self, conn: psycopg.AsyncConnection[Any], worker_id: int) -> bool:
        if self._heartbeat_lease is not None:
            return True
        cur = await conn.execute(query("worker_lock"), {"id": worker_id})
        row = await cur.fetchone()
        return bool(row and row[0])

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await db.session_async(self._dsn, self._role, within=max(self._heartbeat * 2, 10.0))
        return self._conn

    @contextlib.asynccontextmanager
    async def _guard(self) -> Any:
        """Bound every statement in time and turn connection errors into ``DatabaseUnavailable``."""
        conn = self._conn
        if conn is None:
            raise DatabaseUnavailable("no liveness connection")
        try:
            with db.translated(only_connection=True):
                async with asyncio.timeout(max(self._heartbeat * 2, 5.0)):
                    yield conn
        except TimeoutError as exc:
            raise DatabaseUnavailable("liveness statement timed out") from exc
