"""Completer: buffers finished attempts and writes them in one statement per flush.

Service layer. A flush happens ``flush_interval`` seconds after the first buffered result, or at
once when ``flush_size`` results wait, or when the worker has nothing else in hand (no job running or
buffered: no other result is coming to share the statement, and waiting would only delay the job's
end, its ``result()`` and its dependents) and no flush started within the interval (so a worker that
runs dry between jobs under a steady load still writes at most one statement per interval); while
one flush is in flight the next batch grows, so the batch size adapts to the database's speed. Every
write is fenced in SQL on the claim's lease (id, lease): a result for a job the reaper took back is
simply not accepted.

Written batches commit with ``synchronous_commit = off``, so they are kept ("undurable") until the
WAL flush position passes them (checked every ``_DURABLE_CHECK`` seconds); after a reconnect the
worker calls ``resend_undurable()``: a completion a database crash lost is written again (the fence
accepts it while the row still runs under the same lease, and drops it otherwise).

On connection loss the batch is kept and retried with capped backoff (the reaper may re-queue the
jobs meanwhile; the fence then drops the stale results). A batch the database rejects as data
(e.g. a result jsonb cannot hold) is retried one row at a time, and the bad row becomes a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from pgsched import metrics
from pgsched.errors import DatabaseUnavailable, InvalidStateError, ValidationError
from pgsched.hooks import Hooks
from pgsched.job_row import JobState
from pgsched.retry import Backoff
from pgsched.worker.meters import Meters
from pgsched.worker.outcome import error_entry
from pgsched.worker_store import ClaimedJob, Finished, Outcome, WorkerStore

__all__ = ["Completer"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 2.0
_DURABLE_CHECK = 0.2

_Batch = list[tuple[ClaimedJob, Finished]]


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
        self._buffer: _Batch = []
        self._writing: _Batch = []
        self._undurable: list[tuple[int | None, _Batch]] = []  # (WAL position they are behind, batch)
        self._resending: _Batch = []
        self._resend_due = False
        self._checked_at = time.monotonic()
        # Claims wait while this many results are unwritten: a slow or stuck write must not let
        # the producer keep claiming (every claimed job stays 'running' until its result lands).
        self._backlog_max = 2 * flush_size
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        self._due = asyncio.Event()  # flush without waiting out the interval
        self._flushed_at = float("-inf")  # when the last flush started (monotonic)
        self._closing = False
        self._give_up_at: float | None = None
        self._meters = Meters()

    @property
    def pending(self) -> int:
        """Results not yet written: buffered plus the batch being written."""
        return len(self._buffer) + len(self._writing)

    def held(self) -> list[tuple[int, int]]:
        """(id, lease) of every attempt whose end is not yet known durable: buffered, being written, undurable."""
        held = [(f.id, f.lease) for batch in (self._buffer, self._writing, self._resending) for _, f in batch]
        held.extend((f.id, f.lease) for _, batch in self._undurable for _, f in batch)
        return held

    def resend_undurable(self) -> None:
        """The connection was re-opened (maybe after a database crash): write the undurable batches again."""
        if self._undurable:
            self._resend_due = True
            self._wake.set()

    async def wait_for_room(self) -> None:
        """Return at once unless too many results are unwritten; then return after the next write
        (or ``wake_room_waiter``). The caller checks again."""
        if self.pending <= self._backlog_max:
            return
        self._room.clear()
        metrics.WORKER_CLAIMS_HELD.set(1)
        try:
            await self._room.wait()
        finally:
            metrics.WORKER_CLAIMS_HELD.set(0)

    def wake_room_waiter(self) -> None:
        self._room.set()

    def add(self, job: ClaimedJob, finished: Finished, *, last: bool = False) -> None:
        """Buffer a finished attempt; ``last``: the worker has no other job in hand, so write without waiting (unless
        a flush started within the interval)."""
        buffer = self._buffer
        buffer.append((job, finished))
        if len(buffer) >= self._size or (last and time.monotonic() - self._flushed_at >= self._interval):
            self._due.set()
        if len(buffer) == 1 or self._due.is_set():
            self._wake.set()

    def count_committed(self, job: ClaimedJob) -> None:
        """A transactional job wrote its own success."""
        self._meters.of(job.queue, job.task).succeeded.inc()

    async def run(self) -> None:
        """Flush until ``close()`` and everything buffered is written (or the close deadline passed)."""
        while True:
            await self._wait_wake()
            self._wake.clear()
            if self._resend_due:
                await self._resend()
            if self._buffer and not self._closing and not self._due.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._due.wait()
            self._due.clear()
            if self._buffer:
                await self._flush()
            if self._closing and not self._buffer:
                return

    async def _wait_wake(self) -> None:
        """Wait for work; meanwhile, while batches are undurable, check the WAL flush position now and then."""
        while not self._wake.is_set():
            if not self._undurable:
                await self._wake.wait()
                return
            try:
                async with asyncio.timeout(_DURABLE_CHECK):
                    await self._wake.wait()
            except TimeoutError:
                await self._check_durable()

    async def _check_durable(self) -> None:
        """Drop batches the WAL flush has passed; mark the others with the current insert position."""
        self._checked_at = time.monotonic()
        try:
            inserted, flushed = await self._store.wal_positions()
        except DatabaseUnavailable:
            return
        self._undurable = [
            (inserted if lsn is None else lsn, batch) for lsn, batch in self._undurable if lsn is None or lsn > flushed
        ]

    async def _resend(self) -> None:
        self._resend_due = False
        self._resending = [item for _, batch in self._undurable for item in batch]
        self._undurable = []
        try:
            accepted = await self._write_retrying(self._resending)
        finally:
            batch, self._resending = self._resending, []
        if accepted:
            log.warning(
                "re-sent completions a crash lost", extra={"event": "completions_resent", "count": len(accepted)}
            )
        self._keep_undurable(batch, accepted)

    def _keep_undurable(self, batch: _Batch, accepted: dict[int, str]) -> None:
        kept = [item for item in batch if item[1].id in accepted]
        if kept:
            self._undurable.append((None, kept))

    def close(self, timeout: float = 10.0) -> None:
        """Ask ``run()`` to write what is left and return; gives up on a dead database after ``timeout``."""
        self._closing = True
        self._give_up_at = time.monotonic() + timeout
        self._due.set()
        self._wake.set()

    async def _flush(self) -> None:
        self._flushed_at = time.monotonic()
        batch, self._buffer = self._buffer, []
        self._writing = batch
        try:
            await self._write(batch)
        finally:
            self._writing = []
            if self.pending <= self._backlog_max:
                self._room.set()
        if self._undurable and time.monotonic() - self._checked_at > _DURABLE_CHECK:
            await self._check_durable()

    async def _write(self, batch: _Batch) -> None:
        accepted = await self._write_retrying(batch)
        self._keep_undurable(batch, accepted)
        self._account(batch, accepted)
        self._hooks.ended(batch, accepted)

    async def _write_retrying(self, batch: _Batch) -> dict[int, str]:
        backoff = Backoff(cap=_MAX_BACKOFF)
        while True:
            try:
                return await self._store.job_finish_many([f for _, f in batch])
            except ValidationError:
                return await self._one_by_one(batch)
            except DatabaseUnavailable as exc:
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    log.error("results lost", extra={"event": "completer_gave_up", "count": len(batch)})
                    return {}
                log.warning("flush failed", extra={"event": "completer_retry", "error": str(exc)})
                await asyncio.sleep(backoff.next())

    async def _one_by_one(self, batch: _Batch) -> dict[int, str]:
        accepted: dict[int, str] = {}
        for index, (job, finished) in enumerate(batch):
            try:
                accepted.update(await self._store.job_finish_many([finished]))
            except (ValidationError, InvalidStateError) as exc:
                error = error_entry(job.attempt, f"the result could not be stored: {exc}", kind="result")
                replacement = Finished(
                    job.id, job.attempt, job.lease, Outcome.FAILED, error=error, delay=finished.delay
                )
                batch[index] = (job, replacement)
                accepted.update(await self._store.job_finish_many([replacement]))
        return accepted

    def _account(self, batch: _Batch, accepted: dict[int, str]) -> None:
        counts: Counter[tuple[str, str, str]] = Counter()
        kinds: Counter[tuple[str, str, str]] = Counter()
        retried = False
        debug = log.isEnabledFor(logging.DEBUG)
        for job, finished in batch:
            state = accepted.get(job.id)
            if state is None:
                log.info("result not accepted", extra={"event": "job_fenced_out", "job_id": job.id})
                continue
            snoozed = finished.outcome is Outcome.SNOOZED
            counts[(job.queue, job.task, "snoozed" if snoozed and state == JobState.QUEUED else state)] += 1
            if finished.error is not None:
                kind = "snooze_limit" if snoozed and state == JobState.DEAD else str(finished.error.get("kind"))
                kinds[(job.queue, job.task, kind)] += 1
            retried = retried or job.limited  # a slot of a limited queue or key is free: claim again
            if debug and finished.outcome is not Outcome.FAILED:
                log.debug("job %s", state, extra={"event": f"job_{state}", "job_id": job.id, "task": job.task})
            if finished.outcome is Outcome.FAILED or (snoozed and state == JobState.DEAD):
                self._log_failure(job, finished, state)
            retried = retried or state == JobState.QUEUED
        for (queue, task, state), n in counts.items():
            meters = self._meters.of(queue, task)
            if state == JobState.SUCCEEDED:
                meters.succeeded.inc(n)
            elif state == JobState.CANCELLED:
                meters.cancelled.inc(n)
            elif state != "snoozed":
                meters.failed.inc(n)
                (meters.retried if state == JobState.QUEUED else meters.dead).inc(n)
        for (queue, task, kind), n in kinds.items():
            self._meters.error_entries(queue, task, kind, n)
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
