"""SessionRoute: where a long-running process opens what needs a PostgreSQL session, decided once at start-up.

Data layer; opens one probe connection and keeps nothing open. LISTEN, the leader's advisory lock and a
worker's liveness lock need a session of their own; through a transaction-mode pooler (PgBouncer) each
transaction may land on another server session, so they would silently misbehave there. The route:

- ``direct``: ``PGSCHED_DSN`` reaches PostgreSQL itself: sessions use it (as always).
- ``session DSN``: ``PGSCHED_SESSION_DSN`` is set: sessions use it; everything else uses ``PGSCHED_DSN``.
- ``fallback``: a pooler is seen and no session DSN is set: no LISTEN (workers poll every
  ``poll_seconds``), the leader holds the lease row ``pgsched.leader_lease``, and workers live by heartbeat
  age (``workers.heartbeat_lease_seconds``) instead of the liveness lock.

A pooler is recognised as ``pgsched.db`` does (the dialled port differs from the server's); one listening on
PostgreSQL's own port number is not, so set ``PGSCHED_SESSION_DSN`` (to a direct DSN) in front of such one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import psycopg

from pgsched import db
from pgsched.config import Settings

__all__ = ["SessionRoute", "session_route"]

log = logging.getLogger(__name__)

_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class SessionRoute:
    """``session_dsn`` None: no session can be had (the fallback); ``pooled``: PGSCHED_DSN goes through a pooler."""

    pooled: bool
    session_dsn: str | None
    configured: bool = False  # PGSCHED_SESSION_DSN is set

    @property
    def mode(self) -> str:
        if self.session_dsn is None:
            return "fallback"
        return "session DSN" if self.configured else "direct"

    def describe(self) -> str:
        if self.mode == "fallback":
            return (
                "a pooler is in front of PGSCHED_DSN and PGSCHED_SESSION_DSN is not set: no LISTEN (polling), "
                "leader lease row instead of the advisory lock, worker liveness by heartbeat age"
            )
        if self.mode == "session DSN":
            return "LISTEN and the session locks use PGSCHED_SESSION_DSN, everything else PGSCHED_DSN"
        return "direct connection: LISTEN and the session locks use PGSCHED_DSN"


async def session_route(settings: Settings, role: str) -> SessionRoute:
    """Probe PGSCHED_DSN once and choose the route; logs the choice once per process and mode.
    Raises ``DatabaseUnavailable`` when the database cannot be reached."""
    dsn = settings.require_dsn()
    conn = await db.session_async(dsn, role, within=10.0)
    pooled = db.behind_pooler(conn)
    with contextlib.suppress(psycopg.Error):
        await conn.close()
    route = SessionRoute(pooled, settings.session_dsn or (None if pooled else dsn), settings.session_dsn is not None)
    if (role, route.mode) not in _logged:
        _logged.add((role, route.mode))
        log.info(route.describe(), extra={"event": "session_route", "mode": route.mode, "role": role})
    return route
