"""LeaderElector: one leader at a time through the session advisory lock (namespace, 0); LeaseElector: the
same through the lease row ``pgsched.leader_lease``, for candidates without a session (see below).

Data layer. The lock lives on one dedicated, non-pooled connection with TCP keepalives and
``application_name`` ``pgsched:leader:<pid>``; all leader work runs on that same connection,
so a transaction that commits proves the lock was held while it ran.

States: follower (no lock; ``try_acquire`` every election interval) and leader (lock held;
``confirm`` before each batch of work). Any error drops the connection, which frees the lock:
the leader steps down first and campaigns again later. A paused (SIGSTOPped) leader is bounded
by ``idle_session_timeout`` on its session: the server ends the idle session after
``leader_idle_timeout_seconds`` and the lock is free for a follower.

LeaseElector is for candidates that reach PostgreSQL only through a transaction-mode pooler, where a
session lock would stay on whichever server session ran the statement. Follower: ``try_acquire`` takes
the lease when it is free or expired. Leader: the lease is held under an epoch (the fencing token); leader
work runs in ``fenced()`` transactions that first renew the lease under that epoch and keep its row locked
until they commit, so no candidate takes over while one runs, and a leader whose lease expired (paused,
cut off) or was taken finds no row, rolls back (``LeadershipLost``) and steps down. Two leaders never fire
or reap at once (the scheduler prunes right after ``confirm()``, unfenced: see ``pgsched.scheduler``); a lost
leader is replaced within the lease's ``ttl``. ``resign()`` frees the lease at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgsched import db
from pgsched.errors import DatabaseUnavailable
from pgsched.metrics import LEADER_IS_LEADER
from pgsched.queries import query

__all__ = ["LeaderElector", "LeadershipLost", "LeaseElector"]

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    """A fenced leader transaction found the leadership gone; its work was rolled back."""


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
        """The leader's connection; LeadershipLost once the leadership is gone (a ``confirm()`` that failed, e.g.
        through a database restart, makes the next use end the leader's round as a lost fence does)."""
        if self._conn is None or not self.is_leader:
            raise LeadershipLost("not the leader")
        return self._conn

    @property
    def backend_pid(self) -> int | None:
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    @property
    def listens(self) -> bool:
        """Whether leader work may LISTEN on ``conn`` (it is a session of its own)."""
        return True

    @contextlib.asynccontextmanager
    async def fenced(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """The connection for one piece of leader work: the lock's own session proves the leadership."""
        yield self.conn

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
                await self._release()
            log.info("resigned leadership", extra={"event": "leader_resigned", "worker_id": worker_id})
        await self._drop()

    async def _release(self) -> None:
        await self.conn.execute(query("leader_unlock"))

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        options = f"-c idle_session_timeout={self._idle_ms} -c idle_in_transaction_session_timeout={self._idle_ms}"
        return await db.session_async(self._dsn, "leader", options=options)

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            session = await self._open()
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


class LeaseElector(LeaderElector):
    """Campaigns for and holds the lease row; ``fenced()`` gives leader work its transaction."""

    def __init__(self, dsn: str, *, ttl_seconds: float = 10.0) -> None:
        super().__init__(dsn)
        self._ttl = ttl_seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._epoch: int | None = None

    @property
    def backend_pid(self) -> int | None:
        return None  # no session of its own: each transaction may run on another server session

    @property
    def listens(self) -> bool:
        return False

    async def try_acquire(self) -> bool:
        """One attempt to take (or keep) the lease; False (never raises) when another candidate holds it or on error."""
        try:
            conn = await self._connection()
            row = await (await conn.execute(query("leader_lease_take"), self._params())).fetchone()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("leader campaign failed", extra={"event": "leader_campaign_error", "error": str(exc)})
            await self._drop()
            return False
        if row is None:
            return False
        self._epoch = int(row["epoch"])
        self.is_leader = True
        LEADER_IS_LEADER.set(1)
        log.info("became leader (lease)", extra={"event": "leader_elected", "epoch": self._epoch})
        return True

    async def confirm(self) -> bool:
        """Renew the lease; steps down when it is no longer ours."""
        if not self.is_leader or self._conn is None:
            return False
        try:
            row = await (await self._conn.execute(query("leader_lease_renew"), self._params())).fetchone()
        except psycopg.Error as exc:
            await self.step_down(f"lease renewal failed: {exc}")
            return False
        if row is None:
            await self.step_down("lease expired or taken")
            return False
        return True

    @contextlib.asynccontextmanager
    async def fenced(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A transaction holding the renewed lease until it commits; ``LeadershipLost`` (rolled back) when the
        lease is no longer ours."""
        conn = self.conn
        async with conn.transaction():
            if await (await conn.execute(query("leader_lease_renew"), self._params())).fetchone() is None:
                raise LeadershipLost("lease expired or taken")
            yield conn

    async def _release(self) -> None:
        await self.conn.execute(query("leader_lease_release"), self._params())

    def _params(self) -> dict[str, Any]:
        return {"holder": self.holder, "epoch": self._epoch, "ttl": self._ttl}

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        return await db.session_async(self._dsn, "leader")  # no options: PgBouncer refuses that startup parameter

    async def _drop(self) -> None:
        self._epoch = None
        await super()._drop()
