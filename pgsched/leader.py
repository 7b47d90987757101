"""LeaderElector: one leader at a time through the session advisory lock (namespace, 0).

Data layer. The lock lives on one dedicated, non-pooled connection with TCP keepalives and
``application_name`` ``pgsched:leader:<pid>``; all leader work runs on that same connection,
so a transaction that commits proves the lock was held while it ran.

States: follower (no lock; ``try_acquire`` every election interval) and leader (lock held;
``confirm`` before each batch of work). Any error drops the connection, which frees the lock:
the leader steps down first and campaigns again later. A paused (SIGSTOPped) leader is bounded
by ``idle_session_timeout`` on its session: the server ends the idle session after
``leader_idle_timeout_seconds`` and the lock is free for a follower.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import db
from pgsched.errors import DatabaseUnavailable
from pgsched.metrics import LEADER_IS_LEADER
from pgsched.queries import query

__all__ = ["LeaderElector"]

log = logging.getLogger(__name__)


class LeaderElector:
    """Campaigns for and holds the leader lock; exposes the connection leader work must use."""

    def __init__(self, dsn: str, *, idle_timeout_seconds: float = 10.0) -> None:
        self._dsn = dsn
        self._idle_ms = max(1000, int(idle_timeout_seconds * 1000))
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._marked: int | None = None
        self.is_leader = False

    @property
    def conn(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or not self.is_leader:
            raise RuntimeError("not the leader")
        return self._conn

    @property
    def backend_pid(self) -> int | None:
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    async def try_acquire(self) -> bool:
        """One attempt to take the lock; False (never raises) when another process holds it or on error."""
        try:
            conn = await self._connection()
            row = await (await conn.execute(query("leader_try_lock"))).fetchone()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("leader campaign failed", extra={"event": "leader_campaign_error", "error": str(exc)})
            await self._drop()
            return False
        if row is not None and row["locked"]:
            self.is_leader = True
            LEADER_IS_LEADER.set(1)
            log.info("became leader", extra={"event": "leader_elected", "backend_pid": self.backend_pid})
            return True
        return False

    async def confirm(self) -> bool:
        """Check on the lock's own connection that it is still held; steps down when not."""
        if not self.is_leader or self._conn is None:
            return False
        try:
            row = await (await self._conn.execute(query("leader_holds_lock"))).fetchone()
        except psycopg.Error as exc:
            await self.step_down(f"lock check failed: {exc}")
            return False
        if row is None or not row["held"]:
            await self.step_down("lock no longer held")
            return False
        return True

    async def mark(self, worker_id: int | None) -> None:
        """Record in pgsched.workers which registered process leads (best effort; once per row id)."""
        if self._conn is None or worker_id is None or worker_id == self._marked:
            return
        with contextlib.suppress(psycopg.Error):
            await self._conn.execute(query("leader_mark"), {"worker_id": worker_id})
            self._marked = worker_id

    async def step_down(self, reason: str) -> None:
        """Give up leadership: close the connection (which frees the lock). Safe to call twice."""
        if self.is_leader:
            log.warning("stepping down", extra={"event": "leader_step_down", "reason": reason})
        await self._drop()

    async def resign(self, worker_id: int | None = None) -> None:
        """Clean hand-over at shutdown: clear the mark, release the lock, close."""
        if self._conn is not None and self.is_leader:
            with contextlib.suppress(psycopg.Error):
                await self._conn.execute(query("leader_mark"), {"worker_id": None})
                await self._conn.execute(query("leader_unlock"))
            log.info("resigned leadership", extra={"event": "leader_resigned", "worker_id": worker_id})
        await self._drop()

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            options = f"-c idle_session_timeout={self._idle_ms} -c idle_in_transaction_session_timeout={self._idle_ms}"
            session = await db.session_async(self._dsn, "leader", options=options)
            session.row_factory = dict_row
            self._conn = session
        return self._conn

    async def _drop(self) -> None:
        self.is_leader = False
        self._marked = None
        LEADER_IS_LEADER.set(0)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
