"""Producer: claims batches of due jobs for the executor, and sleeps well when there are none.

Service layer. One claim statement per batch, sized to the executor's free room: ``concurrency``
slots plus an adaptive prefetch (about 20 ms of work at the current rate, or eight full claims' round
trips of it when claims are slower, at most ``prefetch_max``), issued when at least half the prefetch
has drained, so a claim overlaps the jobs still buffered.

States: ``busy`` (the last claim came back full: claim again as soon as there is room; the worker
is not marked waiting, so enqueuers send no NOTIFY) and ``idle`` (the queues are drained: mark this
worker waiting, claim once more to close the race with inserts that did not see the mark, then
sleep until a NOTIFY, the earliest future ``run_at`` or the poll interval, whichever comes first).
Without liveness (``ready`` cleared) it claims nothing; when liveness returns it first hands back
the jobs the executor parked. A database error backs off (capped) and tries again.

Each claim publishes which jobs have started (those running, plus the claimed ones that fill free
slots at once, which the executor starts first). A claimed job one charged worker loss short of the
limit (``isolate``) runs alone: the rest of its claim goes back uncharged, the running jobs finish, its
start is published, then it runs with nothing beside it.

A claim that spans a broken connection (``Executor.breaks`` moved while it ran) is handed back at once
rather than started: a crash may have lost its commit, and the executor parked its buffered jobs already.

Reconciliation: after any reconnect (of the store's links or of liveness) and every
``reconcile_seconds``, the running rows under this worker's id that neither the executor nor the
completer holds (by lease) go back to the queue uncharged; after a reconnect the completer first
re-sends its completions that were not yet durable. Claims and reconciliation share this task, so
no claim is ever in flight while the worker compares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pgsched import metrics
from pgsched.errors import PgschedError
from pgsched.hooks import Hooks, Tracer
from pgsched.liveness import Liveness
from pgsched.retry import Backoff
from pgsched.worker.completer import Completer
from pgsched.worker.executor import Executor
from pgsched.worker_store import ClaimedJob, WorkerStore

__all__ = ["Producer", "prefetch_size"]

log = logging.getLogger(__name__)

# The prefetch holds this much work at the current rate, and at least enough to outlast the next claim: a claim is
# issued once half the prefetch has drained, so the half left must cover the claim's round trip (a moving average of
# full claims) with a margin for its spread. Measured (`pgsched bench`, 100k backlog, 2 cores): with 20 ms alone, four
# worker processes claimed batches of ~90 jobs and their buffers ran dry while claims queued for a core (0.122 ms of
# CPU per job, 15.5k jobs/s); with the claim's time counted, 0.097 ms and 19.6k jobs/s (medians, alternating runs).
# A claim slower than a few ms waited on something a bigger buffer does not help with (a lock, a stalled server):
# the window stops at _MAX_WINDOW, so a worker of slow jobs never hoards many seconds of them after one stall.
_PREFETCH_SECONDS = 0.02
_CLAIMS_OF_WORK = 8.0
_MAX_WINDOW = 0.25
_MAX_BACKOFF = 2.0


def prefetch_size(rate: float, claim_seconds: float, *, low: int, high: int) -> int:
    """Jobs to hold beyond the free slots at ``rate`` jobs/s when a full claim takes ``claim_seconds``: the work of
    ``_PREFETCH_SECONDS`` or of ``_CLAIMS_OF_WORK`` claims (at most ``_MAX_WINDOW``), whichever is more, from ``low``
    to ``high``."""
    window = max(_PREFETCH_SECONDS, min(_CLAIMS_OF_WORK * claim_seconds, _MAX_WINDOW))
    return int(min(max(rate * window, low), high))


class Producer:
    def __init__(
        self,
        store: WorkerStore,
        executor: Executor,
        completer: Completer,
        liveness: Liveness,
        *,
        queues: tuple[str, ...],
        concurrency: int,
        prefetch_max: int,
        poll_seconds: float,
        reconcile_seconds: float,
        unserved_delay: float = 30.0,
        hooks: Hooks | None = None,
    ) -> None:
        self._hooks = hooks or Hooks()
        self._store = store
        self._unserved_delay = unserved_delay
        self._executor = executor
        self._completer = completer
        self._reconcile_every = reconcile_seconds
        self._reconcile_at = time.monotonic() + reconcile_seconds
        self._reconnects_seen = 0
        self._reconnected = False
        self._liveness = liveness
        self._queues = queues
        self._concurrency = concurrency
        self._prefetch_min = min(max(1, concurrency // 5), prefetch_max) if prefetch_max else 0
        self._prefetch_max = prefetch_max
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._marked = False
        self._listening = True  # False: nobody LISTENs for this worker, so it never marks itself waiting
        self._rate = 0.0
        self._rate_at = time.monotonic()
        self._rate_count = 0
        self._claim_seconds = 0.0  # moving average of full claims' round trips

    def wake(self) -> None:
        """Something may be due now (a NOTIFY, a reconnect, a retry written): claim soon."""
        self._wake.set()

    def notified(self) -> None:
        """A NOTIFY for one of our queues: the inserter took our waiting marks, so mark again before sleeping."""
        self._marked = False
        self._wake.set()

    def forget_marks(self) -> None:
        """Liveness changed (maybe a new worker id, maybe after a crash): write waiting marks again, reconcile."""
        self._marked = False
        self._reconnected = True
        self._wake.set()

    def poll_only(self) -> None:
        """No LISTEN (no session behind a pooler): never mark queues waiting; the poll finds new jobs."""
        self._listening = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._executor.wake_space_waiter()

    async def run(self) -> None:
        backoff = Backoff(cap=_MAX_BACKOFF)
        while not self._stopping:
            if not self._liveness.ready.is_set():
                await self._wait_ready()
                continue
            try:
                await self._step()
                backoff.reset()
            except PgschedError as exc:
                log.warning("claim failed", extra={"event": "claim_failed", "error": str(exc)})
                await self._sleep(backoff.next())

    async def _step(self) -> None:
        await self._release(self._executor.take_released())
        await self._hand_back_unserved(self._executor.take_unserved())
        await self._executor.wait_for_results_written()
        limit = await self._room()
        worker_id = self._liveness.worker_id
        if self._stopping or limit <= 0 or worker_id is None or not self._liveness.ready.is_set():
            return
        await self._reconcile(worker_id)
        self._wake.clear()
        free = max(0, self._concurrency - self._executor.in_hand)
        breaks = self._executor.breaks
        claim_started = time.monotonic()
        jobs = await self._store.job_claim_batch(
            self._queues, limit, worker_id, running=self._executor.running_ids(), free=free
        )
        if len(jobs) >= limit:  # a full claim: how long the next one may take while the buffer drains
            took = time.monotonic() - claim_started
            self._claim_seconds = took if not self._claim_seconds else 0.7 * self._claim_seconds + 0.3 * took
        metrics.WORKER_CLAIMS.inc()
        if self._executor.breaks != breaks:
            await self._release([(job.id, job.lease) for job in jobs])
            return
        if jobs and self._hooks.tracer is not None:
            await self._read_traces(self._hooks.tracer, jobs)
        if self._stopping or not self._liveness.ready.is_set():
            self._executor.submit(jobs)  # the executor parks them for release: never lose a claim
            return
        if any(job.isolate for job in jobs):
            await self._run_alone(worker_id, jobs)
            return
        if jobs:
            self._executor.submit(jobs)
            log.debug("claimed", extra={"event": "job_claimed", "count": len(jobs)})
            # Let the slots start what was just claimed before this loop sends its next statement (a waiting mark,
            # the next claim): a job picked up from idle then starts one statement's client work sooner.
            await asyncio.sleep(0)
        if len(jobs) >= limit:
            if self._marked:
                self._marked = False
                await self._store.worker_wait_clear(worker_id)
        elif not self._marked and self._listening:
            # Marked before the mark's reply: an insert may take the new mark and its NOTIFY reach ``notified()``
            # before the reply does; that must leave us unmarked (else we sleep through inserts until the poll).
            self._marked = True
            try:
                await self._store.worker_wait_mark(worker_id, self._queues)
            except BaseException:
                self._marked = False
                raise
            # then claim again: an insert that missed the mark is seen now
        elif not jobs:
            await self._idle()

    async def _read_traces(self, tracer: Tracer, jobs: list[ClaimedJob]) -> None:
        """While tracing: tell the tracer the claim time and the trace context each job carries (one read per batch)."""
        claimed_at = time.time()
        ids = [job.id for job in jobs]
        try:
            traces = await self._store.job_trace_list(ids)
        except PgschedError as exc:  # the jobs are claimed: run them untraced rather than drop them
            log.warning("trace context read failed", extra={"event": "trace_read_failed", "error": str(exc)})
            traces = {}
        tracer.claimed(ids, traces, claimed_at)

    async def _release(self, released: list[tuple[int, int]]) -> None:
        """Hand (id, lease) pairs back uncharged; on failure keep them for the next try, never drop them."""
        if not released:
            return
        try:
            await self._store.job_release_leased(released)
        except PgschedError:
            # Dropping them would strand them as running under a live worker the reaper trusts.
            self._executor.keep_released(released)
            raise
        log.info("released unstarted jobs", extra={"event": "jobs_released", "count": len(released)})

    async def _hand_back_unserved(self, unserved: list[tuple[int, int]]) -> None:
        """Jobs of tasks this worker lacks go back uncharged, ``unserved_delay`` seconds later in line."""
        if not unserved:
            return
        try:
            await self._store.job_release_leased(unserved, delay=self._unserved_delay)
        except PgschedError:
            self._executor.keep_unserved(unserved)
            raise

    async def _reconcile(self, worker_id: int) -> None:
        """After a reconnect, or when due: hand back the running rows under this id that nobody here holds."""
        reconnects = self._store.reconnects
        if reconnects != self._reconnects_seen or self._reconnected:
            self._completer.resend_undurable()
        elif time.monotonic() < self._reconcile_at:
            return
        held = self._executor.held() + self._completer.held()
        back = await self._store.job_reconcile(worker_id, held)
        self._reconnects_seen, self._reconnected = reconnects, False
        self._reconcile_at = time.monotonic() + self._reconcile_every
        if back:
            log.warning(
                "handed back running jobs this worker did not hold", extra={"event": "jobs_reconciled", "jobs": back}
            )

    async def _run_alone(self, worker_id: int, jobs: list[ClaimedJob]) -> None:
        """Run the first isolated job with nothing beside it; everything else of the claim goes back uncharged."""
        alone = next(job for job in jobs if job.isolate)
        await self._release([(job.id, job.lease) for job in jobs if job is not alone])
        while self._executor.in_hand > 0 and not self._stopping:
            await self._executor.wait_for_room(0)
        if self._stopping or not await self._store.worker_started_publish(worker_id, [alone.id]):
            await self._release([(alone.id, alone.lease)])
            return
        log.info("running a job alone", extra={"event": "job_isolated", "job_id": alone.id})
        self._executor.submit([alone._replace(started=True)])
        while self._executor.in_hand > 0 and not self._stopping:
            await self._executor.wait_for_room(0)

    async def _room(self) -> int:
        """Wait until a batch is worth claiming; return its size."""
        prefetch = self._prefetch()
        capacity = self._concurrency + prefetch
        min_batch = max(1, prefetch // 2)
        if capacity - self._executor.in_hand < min_batch:
            await self._executor.wait_for_room(capacity - min_batch)
        return capacity - self._executor.in_hand

    def _prefetch(self) -> int:
        now = time.monotonic()
        elapsed = now - self._rate_at
        if elapsed >= 0.005:
            done = self._executor.finished_count
            current = (done - self._rate_count) / elapsed
            self._rate = current if elapsed > 1.0 else 0.5 * self._rate + 0.5 * current
            self._rate_at, self._rate_count = now, done
        return prefetch_size(self._rate, self._claim_seconds, low=self._prefetch_min, high=self._prefetch_max)

    async def _idle(self) -> None:
        self._executor.report_running()
        due_in = await self._store.job_next_due_in(self._queues)
        timeout = self._poll if due_in is None else min(self._poll, max(due_in, 0.001))
        await self._sleep(timeout)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _wait_ready(self) -> None:
        self._marked = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll):
                await self._liveness.ready.wait()
