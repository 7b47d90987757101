"""Completer: buffers finished attempts and writes them in one statement per flush.

Service layer. A flush happens ``flush_interval`` seconds after the first buffered result, or at
once when ``flush_size`` results wait; while one flush is in flight the next batch grows, so the
batch size adapts to the database's speed. Every write is fenced in SQL (id, attempt, running):
a result for a job the reaper took back is simply not accepted.

On connection loss the batch is kept and retried with capped backoff (the reaper may re-queue the
jobs meanwhile; the fence then drops the stale results). A batch the database rejects as data
(e.g. a result jsonb cannot hold) is retried one row at a time, and the bad row becomes a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

from pgsched.errors import DatabaseUnavailable, InvalidStateError, ValidationError
from pgsched.hooks import Hooks
from pgsched.job import JobState
from pgsched.worker.meters import Meters
from pgsched.worker.outcome import error_entry
from pgsched.worker_store import ClaimedJob, Finished, Outcome, WorkerStore

__all__ = ["Completer"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 2.0


class Completer:
    def __init__(
        self,
        store: WorkerStore,
        *,
        flush_interval: float,
        flush_size: int,
        on_retry_queued: Callable[[], None] | None = None,  # also: a limited slot was freed
        hooks: Hooks | None = None,
    ) -> None:
        self._hooks = hooks or Hooks()
        self._store = store
        self._interval = flush_interval
        self._size = flush_size
        self._on_retry = on_retry_queued
        self._buffer: list[tuple[ClaimedJob, Finished]] = []
        self._writing = 0
        # Claims wait while this many results are unwritten: a slow or stuck write must not let
        # the producer keep claiming (every claimed job stays 'running' until its result lands).
        self._backlog_max = 2 * flush_size
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        self._closing = False
        self._give_up_at: float | None = None
        self._meters = Meters()

    @property
    def pending(self) -> int:
        """Results not yet written: buffered plus the batch being written."""
        return len(self._buffer) + self._writing

    async def wait_for_room(self) -> None:
        """Return at once unless too many results are unwritten; then return after the next write
        (or ``wake_room_waiter``). The caller checks again."""
        if self.pending <= self._backlog_max:
            return
        self._room.clear()
        await self._room.wait()

    def wake_room_waiter(self) -> None:
        self._room.set()

    def add(self, job: ClaimedJob, finished: Finished) -> None:
        buffer = self._buffer
        buffer.append((job, finished))
        if len(buffer) == 1 or len(buffer) >= self._size:
            self._wake.set()

    def count_committed(self, job: ClaimedJob) -> None:
        """A transactional job wrote its own success."""
        self._meters.of(job.queue, job.task).succeeded.inc()

    async def run(self) -> None:
        """Flush until ``close()`` and everything buffered is written (or the close deadline passed)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing and len(self._buffer) < self._size:
                await asyncio.sleep(self._interval)
            if self._buffer:
                await self._flush()
            if self._closing and not self._buffer:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Ask ``run()`` to write what is left and return; gives up on a dead database after ``timeout``."""
        self._closing = True
        self._give_up_at = time.monotonic() + timeout
        self._wake.set()

    async def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        self._writing = len(batch)
        try:
            await self._write(batch)
        finally:
            self._writing = 0
            if self.pending <= self._backlog_max:
                self._room.set()

    async def _write(self, batch: list[tuple[ClaimedJob, Finished]]) -> None:
        backoff = 0.05
        while True:
            try:
                accepted = await self._store.job_finish_many([f for _, f in batch])
                break
            except ValidationError:
                accepted = await self._one_by_one(batch)
                break
            except DatabaseUnavailable as exc:
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error("results lost", extra={"event": "completer_gave_up", "count": len(batch)})
                    return
                log.warning("flush failed", extra={"event": "completer_retry", "error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        self._account(batch, accepted)
        self._hooks.ended(batch, accepted)

    async def _one_by_one(self, batch: list[tuple[ClaimedJob, Finished]]) -> dict[int, str]:
        accepted: dict[int, str] = {}
        for index, (job, finished) in enumerate(batch):
            try:
                accepted.update(await self._store.job_finish_many([finished]))
            except (ValidationError, InvalidStateError) as exc:
                error = error_entry(job.attempt, f"the result could not be stored: {exc}", kind="result")
                replacement = Finished(job.id, job.attempt, Outcome.FAILED, error=error, delay=finished.delay)
                batch[index] = (job, replacement)
                accepted.update(await self._store.job_finish_many([replacement]))
        return accepted

    def _account(self, batch: list[tuple[ClaimedJob, Finished]], accepted: dict[int, str]) -> None:
        counts: Counter[tuple[str, str, str]] = Counter()
        retried = False
        debug = log.isEnabledFor(logging.DEBUG)
        for job, finished in batch:
            state = accepted.get(job.id)
            if state is None:
                log.info("result not accepted", extra={"event": "job_fenced_out", "job_id": job.id})
                continue
            counts[(job.queue, job.task, state)] += 1
            retried = retried or job.limited  # a slot of a limited queue or key is free: claim again
            if debug and finished.outcome is not Outcome.FAILED:
                log.debug("job %s", state, extra={"event": f"job_{state}", "job_id": job.id, "task": job.task})
            if finished.outcome is Outcome.FAILED:
                self._log_failure(job, finished, state)
                retried = retried or state == JobState.QUEUED
        for (queue, task, state), n in counts.items():
            meters = self._meters.of(queue, task)
            if state == JobState.SUCCEEDED:
                meters.succeeded.inc(n)
            elif state == JobState.CANCELLED:
                meters.cancelled.inc(n)
            else:
                meters.failed.inc(n)
                (meters.retried if state == JobState.QUEUED else meters.dead).inc(n)
        if retried and self._on_retry is not None:
            self._on_retry()

    @staticmethod
    def _log_failure(job: ClaimedJob, finished: Finished, state: str) -> None:
        error = (finished.error or {}).get("error")
        extra = {"job_id": job.id, "task": job.task, "attempt": job.attempt, "error": error}
        if state == JobState.DEAD:
            log.error("job dead: %s", error, extra={"event": "job_dead", **extra})
        else:
            log.warning("job failed: %s", error, extra={"event": "job_failed", "retry_in": finished.delay, **extra})
