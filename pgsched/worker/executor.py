"""Executor: runs claimed jobs in ``concurrency`` long-lived slots, with timeouts and cancellation.

Service layer, no SQL of its own. Each slot is one asyncio task that takes jobs from a buffer and
awaits them directly (no task per job): async functions run on the loop, sync ones in a thread
pool (or, declared ``executor="process"``, in the process pool: ``pgsched.worker.processes``),
transactional ones inside a database transaction that also records their success.

A job is cancelled (``cancel``) or aborted at shutdown (``abort_running``) by cancelling its slot's
task with a mark saying why; the slot clears the cancellation and goes on with the next job.
A sync function in a thread cannot be interrupted: its thread runs on, and its outcome is recorded at
once; one in a process child is stopped by killing the child.
While liveness is lost (``ready`` cleared) a slot starts nothing: it parks the job for release. When a
connection of the process breaks or liveness changes (``connection_broke``), every buffered job is parked
for release at once (published as started or not): a database crash may have lost its claim's commit.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pgsched.config import DEFAULT_RESULT_MAX_BYTES
from pgsched.context import JobContext, current_job, reset_current_job, set_current_job
from pgsched.control import JobControl
from pgsched.errors import TaskNotFound
from pgsched.hooks import Hooks
from pgsched.retry import RetryPolicy
from pgsched.tasks import Task
from pgsched.worker import outcome
from pgsched.worker.completer import Completer
from pgsched.worker.meters import Meters
from pgsched.worker.processes import ProcessPool
from pgsched.worker.progress import ProgressWriter
from pgsched.worker_store import ClaimedJob, Finished, WorkerStore

__all__ = ["Executor"]

log = logging.getLogger(__name__)

_YIELD_EVERY = 32  # jobs that never suspend would otherwise starve the event loop
_CANCEL, _ABORT = "cancel", "abort"


class _FencedOut(Exception):
    """A transactional job is no longer ours: roll its transaction back."""


@dataclass(slots=True)
class _Slot:
    task: asyncio.Task[None] | None = None
    job: ClaimedJob | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the slot needs to know about a task, computed once per task name."""

    task: Task | None
    is_async: bool
    retry: RetryPolicy
    missing: TaskNotFound | None = None


class Executor:
    def __init__(
        self,
        lookup: Callable[[str], Task],
        store: WorkerStore,
        completer: Completer,
        *,
        concurrency: int,
        ready: asyncio.Event,
        worker_id: Callable[[], int | None],
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        hooks: Hooks | None = None,
        progress: ProgressWriter | None = None,
        processes: ProcessPool | None = None,
    ) -> None:
        self._processes = processes
        self._hooks = hooks or Hooks()
        self._progress = progress
        self._lookup = lookup
        self._result_max_bytes = result_max_bytes
        self._store = store
        self._completer = completer
        self._concurrency = concurrency
        self._ready = ready
        self._worker_id = worker_id
        self._buffer: asyncio.Queue[ClaimedJob | None] = asyncio.Queue()
        self._slots = [_Slot() for _ in range(concurrency)]
        self._running: dict[int, _Slot] = {}
        self._plans: dict[str, _Plan] = {}
        self._released: list[tuple[int, int]] = []  # (id, lease)
        self._unserved: list[tuple[int, int]] = []  # (id, lease) of claimed jobs whose task this worker lacks
        self._held: set[tuple[int, int]] = set()  # (id, lease) of every job in hand: buffered or running
        self._announced: set[int] = set()  # buffered jobs already published as started (they start first)
        self._threads = ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="pgsched-job")
        self._in_threads: set[Future[Any]] = set()
        self._meters = Meters()
        self._space = asyncio.Event()
        self._space_at = -1
        self._done = asyncio.Event()
        self.finished_count = 0
        self.breaks = 0  # connection_broke() calls: a claim that spans one may have lost its commit

    # ---------------------------------------------------------------- producer side
    @property
    def in_hand(self) -> int:
        """Jobs claimed and not finished: buffered plus running."""
        return self._buffer.qsize() + len(self._running)

    def submit(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            self._held.add((job.id, job.lease))
            if job.started:
                self._announced.add(job.id)
            self._buffer.put_nowait(job)
        self._meters.running(min(self.in_hand, self._concurrency))

    def report_running(self) -> None:
        self._meters.running(len(self._running))

    async def wait_for_room(self, n: int) -> None:
        """Return once at most ``n`` jobs are in hand, or when woken (``wake_space_waiter``)."""
        if self.in_hand <= n:
            return
        self._space_at = n
        self._space.clear()
        try:
            await self._space.wait()
        finally:
            self._space_at = -1

    def wake_space_waiter(self) -> None:
        self._space.set()
        self._completer.wake_room_waiter()

    async def wait_for_results_written(self) -> None:
        """Back-pressure from the completer: too many finished jobs not yet written."""
        await self._completer.wait_for_room()

    def held(self) -> list[tuple[int, int]]:
        """(id, lease) of the jobs in hand, buffered or running."""
        return list(self._held)

    def take_released(self) -> list[tuple[int, int]]:
        """Claimed jobs (id, lease) that were not started (liveness lost, shutdown): to hand back uncharged."""
        released, self._released = self._released, []
        return released

    def keep_released(self, released: list[tuple[int, int]]) -> None:
        """Their hand-back failed (database away): keep them for the next try, never drop them."""
        self._released = released + self._released

    def take_unserved(self) -> list[tuple[int, int]]:
        """Claimed jobs (id, lease) of tasks this worker does not serve: to hand back uncharged, later in line."""
        unserved, self._unserved = self._unserved, []
        return unserved

    def keep_unserved(self, unserved: list[tuple[int, int]]) -> None:
        self._unserved = unserved + self._unserved

    def release_buffered(self) -> int:
        count = stops = 0
        while not self._buffer.empty():
            job = self._buffer.get_nowait()
            if job is None:
                stops += 1  # close() asked a slot to stop: it still must
            else:
                self._release(job)
                count += 1
        for _ in range(stops):
            self._buffer.put_nowait(None)
        return count

    def connection_broke(self) -> None:
        """A connection of this process broke, or liveness changed: the database may have crashed and lost the
        last claims' commits (``synchronous_commit`` is off), or they were made under a worker id now gone. Started
        from the buffer, such a claim's job would run here while another worker claims it again, so every
        buffered job is parked for release instead (fenced on the lease: a lost claim's hand-back changes nothing).
        """
        self.breaks += 1
        released = self.release_buffered()
        if released:
            log.info("buffered jobs parked for release", extra={"event": "jobs_parked", "count": released})
            if self._space_at >= 0 and self.in_hand <= self._space_at:
                self._space.set()  # the producer waits for room: it hands them back now

    # ---------------------------------------------------------------- cancellation and shutdown
    def running_ids(self) -> list[int]:
        """Ids of the jobs started and not finished (or published as started and about to start):
        what the worker publishes as started."""
        return [*self._running, *self._announced]

    def running_leases(self) -> list[tuple[int, int]]:
        return [(job_id, slot.job.lease) for job_id, slot in self._running.items() if slot.job is not None]

    def cancel(self, job_id: int, reason: str = _CANCEL) -> bool:
        slot = self._running.get(job_id)
        if slot is None or slot.reason is not None or slot.task is None:
            return False
        slot.reason = reason
        slot.task.cancel()
        log.info("cancelling job", extra={"event": "job_cancelling", "job_id": job_id, "reason": reason})
        return True

    def cancel_attempt(self, job_id: int, lease: int) -> bool:
        """Stop this attempt (id, lease) if it still runs here: the reaper took it back (its own lease ran out)."""
        slot = self._running.get(job_id)
        if slot is None or slot.job is None or slot.job.lease != lease:
            return False
        log.warning("attempt taken back by the reaper", extra={"event": "job_lease_lost", "job_id": job_id})
        return self.cancel(job_id)

    def abort_running(self) -> int:
        return sum(self.cancel(job_id, _ABORT) for job_id in list(self._running))

    async def wait_idle(self, seconds: float | None, hurry: asyncio.Event | None = None) -> bool:
        """Wait up to ``seconds`` until no job runs (or until ``hurry`` is set); True when idle."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while self._running:
            if hurry is not None and hurry.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._done.clear()
            try:
                async with asyncio.timeout(min(remaining or 0.1, 0.1)):
                    await self._done.wait()
            except TimeoutError:
                pass
        return True

    @property
    def threads_busy(self) -> bool:
        """A sync function is still running in a thread (cancelled or timed out, it could not be stopped)."""
        return bool(self._in_threads)

    async def run(self) -> None:
        """Run the slots until ``close()``."""
        try:
            async with asyncio.TaskGroup() as group:
                for slot in self._slots:
                    slot.task = group.create_task(self._slot_loop(slot))
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)
            if self._processes is not None:
                await self._processes.close()

    def close(self) -> None:
        """Let every slot finish its current job and stop."""
        for _ in self._slots:
            self._buffer.put_nowait(None)

    # ---------------------------------------------------------------- the slots
    async def _slot_loop(self, slot: _Slot) -> None:
        buffer = self._buffer
        streak = 0
        while True:
            job = await buffer.get()
            if job is None:
                return
            await self._run(slot, job)
            self.finished_count += 1
            if self._space_at >= 0 and self.in_hand <= self._space_at:
                self._space.set()
            streak += 1
            if streak >= _YIELD_EVERY:
                streak = 0
                await asyncio.sleep(0)

    def _release(self, job: ClaimedJob) -> None:
        self._announced.discard(job.id)
        self._held.discard((job.id, job.lease))
        self._released.append((job.id, job.lease))

    def _plan(self, name: str) -> _Plan:
        plan = self._plans.get(name)
        if plan is None:
            try:
                task = self._lookup(name)
                plan = _Plan(task, task.is_async, task.retry)
            except TaskNotFound as exc:
                plan = _Plan(None, False, RetryPolicy(), missing=exc)
            self._plans[name] = plan
        return plan

    async def _run(self, slot: _Slot, job: ClaimedJob) -> None:
        if not self._ready.is_set():
            self._release(job)
            return
        self._announced.discard(job.id)
        plan = self._plan(job.task)
        if plan.task is None:
            # A mixed deployment: another worker may serve this task. Never charge an attempt for it.
            self._held.discard((job.id, job.lease))
            self._unserved.append((job.id, job.lease))
            log.warning(
                "claimed a job of a task this worker does not serve",
                extra={"event": "job_unserved", "job_id": job.id, "task": job.task},
            )
            return
        meters = self._meters.of(job.queue, job.task)
        meters.started.inc()
        meters.wait.observe(job.waited if job.waited > 0 else 0.0)
        slot.job, slot.reason = job, None
        self._running[job.id] = slot
        context = JobContext(job.id, job.attempt, job.queue, job.task, self._worker_id(), job.lease, self._progress)
        token = set_current_job(context)
        self._hooks.started(job)
        started = time.perf_counter()
        try:
            finished = await self._attempt(slot, job, plan)
        finally:
            # The same job can be in hand twice: a database crash may lose a claim's commit
            # (synchronous_commit is off), and this worker then claims the job again while the first
            # copy still runs. The lease fence settles which result counts (the first copy's lease is
            # gone); here only the slot that is still registered for the id removes it.
            if self._running.get(job.id) is slot:
                del self._running[job.id]
            self._held.discard((job.id, job.lease))
            slot.job = None
            reset_current_job(token)
            self._done.set()
        meters.duration.observe(time.perf_counter() - started)
        if self._progress is not None and self._progress.holds(job.id, job.lease):  # rare: skip a coroutine a job
            await self._progress.settle(job.id, job.lease)
        if finished is not None:
            self._completer.add(job, finished, last=not self.in_hand)

    async def _attempt(self, slot: _Slot, job: ClaimedJob, plan: _Plan) -> Finished | None:
        if plan.task is None:
            return outcome.failure(job, plan.missing or TaskNotFound(job.task), plan.retry)
        seconds = job.timeout if job.timeout is not None else plan.task.timeout
        deadline = asyncio.timeout(seconds) if seconds else None
        try:
            if deadline is None:
                result = await self._invoke(plan, job)
            else:
                async with deadline:
                    result = await self._invoke(plan, job)
        except asyncio.CancelledError:
            if slot.reason is None:
                raise  # not ours: the worker itself is being torn down
            return self._cancelled(slot, job)
        except _FencedOut:
            log.info("job no longer ours", extra={"event": "job_fenced_out", "job_id": job.id})
            return None
        except JobControl as signal:
            return outcome.controlled(job, signal, plan.retry, max_snoozes=plan.task.max_snoozes)
        except Exception as exc:
            if deadline is not None and deadline.expired() and isinstance(exc, TimeoutError):
                return outcome.timed_out(job, float(seconds or 0), plan.retry)
            return outcome.failure(job, exc, plan.retry, final=not plan.task.retries(exc))
        if slot.reason is not None and slot.task is not None:
            slot.task.uncancel()  # the function swallowed the cancellation and returned
        if isinstance(result, JobControl):  # returned rather than raised: the same signal
            return outcome.controlled(job, result, plan.retry, max_snoozes=plan.task.max_snoozes)
        if result is _COMMITTED:
            self._completer.count_committed(job)
            self._hooks.committed(job)
            return None
        try:
            return outcome.success(job, outcome.encode_result(result, max_bytes=self._result_max_bytes))
        except outcome.ResultNotStorable as exc:
            return outcome.failure(job, exc, plan.retry)

    def _cancelled(self, slot: _Slot, job: ClaimedJob) -> Finished | None:
        assert slot.task is not None
        slot.task.uncancel()
        if slot.reason == _ABORT:
            self._release(job)
            return None
        return outcome.cancelled(job)

    def _invoke(self, plan: _Plan, job: ClaimedJob) -> Any:
        return (
            self._hooks.around(functools.partial(self._call, plan, job), job)
            if self._hooks.wraps
            else self._call(plan, job)
        )

    def _call(self, plan: _Plan, job: ClaimedJob) -> Any:
        task = plan.task
        assert task is not None
        if task.transactional:
            return self._transactional(task, job)
        if plan.is_async:
            return task.func(**job.args)
        if task.executor == "process" and self._processes is not None:
            return self._processes.run(task.func, job.args, current_job(), self._progress)
        future = self._threads.submit(functools.partial(contextvars.copy_context().run, task.func, **job.args))
        self._in_threads.add(future)
        future.add_done_callback(self._in_threads.discard)
        return asyncio.wrap_future(future)

    async def _transactional(self, task: Task, job: ClaimedJob) -> Any:
        if not task.is_async:
            raise TypeError("a transactional task must be an async function: it receives an AsyncConnection as conn")
        async with self._store.transaction() as conn:
            result = await task.func(conn=conn, **job.args)
            encoded = outcome.encode_result(result, max_bytes=self._result_max_bytes)
            if not await self._store.job_finish_in(conn, outcome.success(job, encoded)):
                raise _FencedOut
        return _COMMITTED


_COMMITTED: Any = object()
