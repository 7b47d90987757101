"""Notifier: the one dedicated LISTEN connection of a process, with a dead-link check and reconnects.

Data layer. Hands each notification to a callback (no queueing of its own). NOTIFY is a hint and
polling is the guarantee, so nothing is lost for good when this connection is.

States: ``connecting`` -> ``listening`` (``connected`` set; between notifications a ping every
``ping_seconds`` proves the link) -> on any error ``lost`` (``connected`` cleared, reconnect with
capped backoff with full jitter) -> ``listening`` again, at which point ``on_connect`` runs so the
owner can catch up on what it missed. ``stop()`` ends ``run()`` at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from pgsched import db
from pgsched.errors import DatabaseUnavailable
from pgsched.metrics import LISTENER_RECONNECTS
from pgsched.queries import query
from pgsched.retry import Backoff

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """LISTEN on ``channels``; call ``on_notify(channel, payload)`` for each notification."""

    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        *,
        on_connect: Callable[[], None] | None = None,
        ping_seconds: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._ping = ping_seconds
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None

    async def run(self) -> None:
        self._task = asyncio.current_task()
        backoff = Backoff(cap=self._max_backoff)
        first = True
        try:
            while not self._stopped:
                try:
                    async with await self._connect() as conn:
                        self.connected.set()
                        backoff.reset()
                        if not first:
                            LISTENER_RECONNECTS.inc()
                            log.info("listener reconnected", extra={"event": "listener_reconnected"})
                        first = False
                        if self._on_connect is not None:
                            self._on_connect()
                        await self._listen(conn)
                except (psycopg.Error, DatabaseUnavailable, TimeoutError, OSError) as exc:
                    self._lost(exc)
                await asyncio.sleep(backoff.next())
        except asyncio.CancelledError:
            if not self._stopped:
                raise
        finally:
            self.connected.clear()
            self.backend_pid = None

    def stop(self) -> None:
        """End ``run()`` now; safe to call twice."""
        self._stopped = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        async with asyncio.timeout(max(self._ping * 2, 10.0)):
            conn = await db.session_async(self._dsn, "listener")
            try:
                for channel in self._channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:  # stopped or timed out before run() owns it: it must not be left open
                await conn.close()
                raise
        self.backend_pid = conn.info.backend_pid
        log.debug("listening", extra={"event": "listener_connected", "channels": self._channels})
        return conn

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while not self._stopped:
            async for notify in conn.notifies(timeout=self._ping):
                self._dispatch(notify.channel, notify.payload)
            async with asyncio.timeout(max(self._ping * 2, 5.0)):
                await conn.execute(query("listener_ping"))

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            self._on_notify(channel, payload)
        except Exception:  # a bug in the owner's callback must not kill the listener
            log.exception("notification handler failed", extra={"event": "listener_handler_failed"})

    def _lost(self, exc: BaseException) -> None:
        self.connected.clear()
        self.backend_pid = None
        if not self._stopped:
            log.warning("listener connection lost", extra={"event": "listener_lost", "error": str(exc).strip()})
