"""Scheduler: the leader candidate service — election, exactly-once cron, reaper and pruner.

Service layer. ``run()`` campaigns every ``election_interval_seconds``; once leader it loops:
confirm the lock on its own connection, fire due schedules (``ScheduleStore.schedule_fire_due``),
reap lost workers' jobs and prune on their intervals, start a vacuum of the live partitions in the
background when their dead tuples call for one (``pgsched.live_vacuum``), then wait on that same connection for
``NOTIFY pgsched_schedules`` or the next fire instant, never longer than the election interval
(so a paused process is noticed by the server's idle timeout, not by us). Any error: step down
first (drop the connection, freeing the lock), then campaign again.

Where the lock lives is decided at start (``pgsched.session_route``): on PGSCHED_DSN when it reaches
PostgreSQL directly, on PGSCHED_SESSION_DSN when set; behind a transaction-mode pooler without one, the
lease row (``LeaseElector``): firing and reaping then run in fenced transactions, pruning right after a
renewal, and the leader waits on a timer instead of LISTEN.

Without ``worker_id`` the service registers its own ``pgsched.workers`` row (role scheduler) so
it shows in ``pgsched.cluster``; inside ``pgsched worker`` it reuses the worker's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import psycopg

from pgsched.clock import Clock
from pgsched.config import Settings
from pgsched.errors import DatabaseUnavailable
from pgsched.leader import LeaderElector, LeadershipLost, LeaseElector
from pgsched.live_vacuum import LiveVacuum
from pgsched.liveness import Liveness
from pgsched.maintenance import Pruner, Reaper
from pgsched.metrics import SCHEDULES_FIRED
from pgsched.retry import Backoff
from pgsched.schedule_store import ScheduleStore
from pgsched.session_route import session_route

__all__ = ["Scheduler"]

# The leader's wait between rounds looks up this often to see whether it was asked to stop.
_STOP_CHECK_SECONDS = 0.1

log = logging.getLogger(__name__)


class Scheduler:
    """Leader candidate: ``await run()`` until ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        worker_id: Callable[[], int | None] | None = None,
    ) -> None:
        self._settings = settings
        dsn = settings.require_dsn()
        self.elector: LeaderElector = LeaderElector(dsn, idle_timeout_seconds=settings.leader_idle_timeout_seconds)
        self._schedules = ScheduleStore(None, clock=clock)
        self._reaper = Reaper(settings)
        self._pruner = Pruner(settings)
        self._vacuum = LiveVacuum(settings)
        self._liveness = (
            None
            if worker_id is not None
            else Liveness(dsn, role="scheduler", heartbeat_seconds=settings.heartbeat_seconds)
        )
        self._worker_id = worker_id or (lambda: self._liveness.worker_id if self._liveness else None)
        self._stop = asyncio.Event()
        self.rounds = 0  # leader rounds this process finished (for operators and tests)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                await self._open()
                if self._liveness is not None:
                    group.create_task(self._liveness.run())
                await self._campaign()
                if self._liveness is not None:
                    self._liveness.stop()
        finally:
            await self.elector.resign(self._worker_id())
            if self._liveness is not None:
                await self._liveness.close()

    async def _open(self) -> None:
        """Choose where the lock lives (once), then register (without a worker to share a row with)."""
        backoff = Backoff(base=0.1, cap=self._settings.election_interval_seconds)
        route = None
        while not self._stop.is_set():
            try:
                if route is None:
                    route = await session_route(self._settings, "leader")
                    self._use(route.session_dsn)
                if self._liveness is not None:
                    await self._liveness.open()
                return
            except DatabaseUnavailable as exc:
                log.warning("scheduler cannot register yet", extra={"event": "scheduler_wait_db", "error": str(exc)})
                await self._sleep(backoff.next())

    def _use(self, session_dsn: str | None) -> None:
        settings = self._settings
        if session_dsn is None:
            self.elector = LeaseElector(settings.require_dsn(), ttl_seconds=settings.leader_idle_timeout_seconds)
        else:
            self.elector = LeaderElector(session_dsn, idle_timeout_seconds=settings.leader_idle_timeout_seconds)
        if self._liveness is not None:
            lease = None if session_dsn is not None else settings.lease_seconds
            self._liveness.reroute(session_dsn or settings.require_dsn(), heartbeat_lease=lease)

    async def _campaign(self) -> None:
        interval = self._settings.election_interval_seconds
        while not self._stop.is_set():
            if await self.elector.try_acquire():
                await self.elector.mark(self._worker_id())
                try:
                    await self._lead()
                except (psycopg.Error, DatabaseUnavailable, OSError, LeadershipLost) as exc:
                    await self.elector.step_down(f"error while leading: {exc}")
                continue
            await self._sleep(interval)

    async def _lead(self) -> None:
        try:
            await self._loop()
        finally:
            await self._vacuum.close()  # a vacuum round never outlives the term it started in

    async def _loop(self) -> None:
        interval = self._settings.election_interval_seconds
        next_reap = next_prune = 0.0
        elector = self.elector
        if elector.listens:
            await elector.conn.execute("LISTEN pgsched_schedules")
        while not self._stop.is_set():
            if not await elector.confirm():
                return
            await elector.mark(self._worker_id())  # the worker's row may appear after the election
            async with elector.fenced() as conn:
                report = await self._schedules.schedule_fire_due(conn)
            if report.fired:
                SCHEDULES_FIRED.labels(schedule="*").inc(report.fired)
            now = time.monotonic()
            if now >= next_reap:
                async with elector.fenced() as conn:
                    await self._reaper.reap(conn)
                next_reap = now + self._settings.reaper_interval_seconds
            if now >= next_prune:
                # Right after a renewal, not inside a fence: the partition DDL must commit statement by statement
                # (in one fenced transaction its locks would hold up the hot path for the whole round), and the
                # prune is idempotent if a lost leader finishes its round while another starts one.
                if await elector.confirm():
                    await self._pruner.prune(elector.conn)
                next_prune = now + self._settings.prune_interval_seconds
            elif self._pruner.history_behind and await elector.confirm():
                await self._pruner.history_maintain(elector.conn)  # the partitions a round left, a slice per loop
            self._vacuum.tick(now)  # in the background, on its own connection (see pgsched.live_vacuum)
            self.rounds += 1
            wait = interval if report.wake_in is None else min(interval, report.wake_in)
            if elector.listens:
                await self._wait_on(elector.conn, wait)
            else:
                await self._sleep(wait)

    async def _wait_on(self, conn: psycopg.AsyncConnection[object], seconds: float) -> None:
        """Wait on the leader connection for a schedule change or the next instant (at most one interval).

        Waiting on the connection itself (rather than a separate listener) means a broken link
        surfaces here as an error, and the wait is never cancelled midway through a read. It waits in
        slices of ``_STOP_CHECK_SECONDS``, so a stop is seen within one (not after a whole interval).
        """
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or await self._first_notify(conn, min(left, _STOP_CHECK_SECONDS)):
                return

    @staticmethod
    async def _first_notify(conn: psycopg.AsyncConnection[object], seconds: float) -> bool:
        """Whether a notification came within ``seconds``."""
        async for _ in conn.notifies(timeout=seconds, stop_after=1):
            return True
        return False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()
