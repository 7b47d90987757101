"""Reads that may go to a read replica (``PGSCHED_READ_DSN``): the list endpoints, the dashboard's reads and
the metrics queries. Interface layer wiring: no SQL of its own.

Read-after-write is kept by routing, not by waiting for replay: what a client reads right after its own
write (``GET /jobs/{id}``, one schedule, one workflow) and whatever depends on the primary's session locks
(``/health``, ``/workers``, ``/leader``) stays on the primary. Lists from the replica are as fresh as its
replay (``pg_last_xact_replay_timestamp()``). When the replica cannot be reached the read is answered by
the primary and the replica is skipped for ``REPLICA_RETRY_SECONDS`` (logged once per outage, counted in
``pgsched_api_replica_fallbacks_total``): the API keeps answering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool

from pgsched import db
from pgsched.admin_store import AdminStore
from pgsched.clock import Clock
from pgsched.config import Settings
from pgsched.dashboard_store import DashboardStore
from pgsched.errors import DatabaseUnavailable
from pgsched.metrics import API_REPLICA_FALLBACKS
from pgsched.operator_store import OperatorStore
from pgsched.schedule_store import ScheduleStore
from pgsched.workflow_store import AsyncWorkflowStore

__all__ = ["REPLICA_RETRY_SECONDS", "ReadRouter", "ReadStores", "replica_pool"]

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLICA_RETRY_SECONDS = 5.0
REPLICA_WAIT_SECONDS = 2.0  # a replica that gives no connection within this is taken as down


def replica_pool(settings: Settings) -> AsyncConnectionPool | None:
    """An unopened pool on PGSCHED_READ_DSN, or None when it is not set."""
    if not settings.read_dsn:
        return None
    return db.async_pool(
        settings.read_dsn,
        "api-read",
        min_size=0,
        max_size=4,
        statement_timeout=settings.api_statement_timeout_seconds,
        wait_timeout=REPLICA_WAIT_SECONDS,
    )


@dataclass(frozen=True)
class ReadStores:
    """The stores whose reads a replica can answer, over one pool."""

    operator: OperatorStore
    admin: AdminStore
    schedules: ScheduleStore
    workflows: AsyncWorkflowStore
    dashboard: DashboardStore

    @classmethod
    def over(cls, pool: AsyncConnectionPool, clock: Clock) -> ReadStores:
        return cls(
            operator=OperatorStore(pool, clock=clock),
            admin=AdminStore(pool, clock=clock),
            schedules=ScheduleStore(pool, clock=clock),
            workflows=AsyncWorkflowStore(pool),
            dashboard=DashboardStore(pool),
        )


class ReadRouter:
    """``await read(lambda s: s.operator.job_list(...))``: from the replica when there is one and it answers."""

    def __init__(self, primary: ReadStores, replica: ReadStores | None) -> None:
        self._primary = primary
        self._replica = replica
        self._skip_until = 0.0
        self._down = False

    async def read(self, use: Callable[[ReadStores], Awaitable[T]]) -> T:
        if self._replica is not None and time.monotonic() >= self._skip_until:
            try:
                result = await use(self._replica)
            except DatabaseUnavailable as exc:
                self._skip_until = time.monotonic() + REPLICA_RETRY_SECONDS
                if not self._down:
                    self._down = True
                    log.warning(
                        "read replica unavailable: reading from the primary",
                        extra={"event": "replica_down", "error": str(exc)},
                    )
            else:
                if self._down:
                    self._down = False
                    log.info("read replica back", extra={"event": "replica_up"})
                return result
        if self._replica is not None and self._down:
            API_REPLICA_FALLBACKS.inc()
        return await use(self._primary)
