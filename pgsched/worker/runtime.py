"""Worker: one process's job runner, wired from its parts, with one ``run()`` / ``stop()`` lifecycle.

Service layer. Parts, each a child task of one TaskGroup: ``Liveness`` (row, advisory lock,
heartbeat), ``Notifier`` (LISTEN pgsched_jobs and pgsched_cancel), ``Producer`` (claims),
``Executor`` (slots), ``Completer`` (batched writes), ``ProgressWriter`` (the tasks' progress and
heartbeat reports, batched) and a cancel watcher (the poll behind NOTIFY).

Shutdown (``stop()``): stop claiming; hand buffered jobs back at once; let running jobs finish
within ``grace_seconds`` (a second ``stop()`` ends the grace now); then cancel what still runs and
hand it back without charging an attempt; flush the completer; unregister. Losing the database
pauses the worker (no new jobs start) until liveness is back; it never exits for that.

Where the sessions go is decided at start (``pgsched.session_route``): behind a transaction-mode pooler
without ``PGSCHED_SESSION_DSN`` there is no Notifier (the producer polls every ``poll_seconds`` and marks
no queue as waiting, so enqueues send no NOTIFY for it) and liveness takes no lock (heartbeat age).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from pgsched.builtins import builtin_tasks
from pgsched.config import Settings
from pgsched.errors import PgschedError
from pgsched.liveness import Liveness
from pgsched.notifier import Notifier
from pgsched.session_route import session_route
from pgsched.tasks import Task, TaskRegistry, publication
from pgsched.worker.completer import Completer
from pgsched.worker.config import WorkerConfig
from pgsched.worker.executor import Executor
from pgsched.worker.processes import ProcessPool
from pgsched.worker.producer import Producer
from pgsched.worker.progress import ProgressWriter
from pgsched.worker_store import WorkerStore

__all__ = ["JOBS_CHANNEL", "CANCEL_CHANNEL", "Worker"]

log = logging.getLogger(__name__)

JOBS_CHANNEL = "pgsched_jobs"
_RECONCILE_HEARTBEATS = 3  # the running rows under this id are compared with what it holds this often
CANCEL_CHANNEL = "pgsched_cancel"


class Worker:
    """Runs jobs of ``tasks`` (plus the built-in ones) from ``config.queues`` until stopped."""

    def __init__(self, tasks: TaskRegistry, settings: Settings, config: WorkerConfig | None = None) -> None:
        self.config = config or WorkerConfig()
        self._tasks = tasks
        self._builtins = builtin_tasks(settings)
        dsn = settings.require_dsn()
        self._settings = settings
        self._store = WorkerStore(dsn, pool_size=min(self.config.concurrency, 20), on_broken=self._link_broken)
        self._liveness = Liveness(
            dsn,
            queues=self.config.queues,
            concurrency=self.config.concurrency,
            heartbeat_seconds=settings.heartbeat_seconds,
            on_change=self._liveness_changed,
            started=self._started_ids,
            tasks=publication([*self._builtins.values(), *tasks]),
        )
        self._completer = Completer(
            self._store,
            flush_interval=self.config.flush_interval,
            flush_size=self.config.flush_size,
            on_retry_queued=self._wake_producer,
            hooks=tasks.hooks,
        )
        self._progress = ProgressWriter(self._store, lease_seconds=settings.lease_seconds, on_lost=self._attempt_lost)
        self._processes = ProcessPool(
            self.config.processes or os.cpu_count() or 1,
            max_tasks_per_child=self.config.max_tasks_per_child,
            max_memory_mb=self.config.child_memory_mb,
        )
        self._executor = Executor(
            self._lookup,
            self._store,
            self._completer,
            concurrency=self.config.concurrency,
            ready=self._liveness.ready,
            worker_id=lambda: self._liveness.worker_id,
            result_max_bytes=settings.result_max_bytes,
            hooks=tasks.hooks,
            progress=self._progress,
            processes=self._processes,
        )
        self._producer = Producer(
            self._store,
            self._executor,
            self._completer,
            self._liveness,
            queues=self.config.queues,
            concurrency=self.config.concurrency,
            prefetch_max=self.config.prefetch_max,
            poll_seconds=settings.poll_seconds,
            reconcile_seconds=_RECONCILE_HEARTBEATS * settings.heartbeat_seconds,
            unserved_delay=self.config.unserved_delay,
            hooks=tasks.hooks,
        )
        self._notifier: Notifier | None = None  # built by run() when a session can be had
        self._queues = frozenset(self.config.queues)
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()

    # ---------------------------------------------------------------- public
    @property
    def worker_id(self) -> int | None:
        return self._liveness.worker_id

    @property
    def listener_pid(self) -> int | None:
        """Backend pid of the LISTEN connection (for operators and tests); None without one."""
        return None if self._notifier is None else self._notifier.backend_pid

    @property
    def results_pending(self) -> int:
        """Finished attempts whose end is not written yet: buffered, or in the write under way."""
        return self._completer.pending

    @property
    def threads_busy(self) -> bool:
        """A sync task still runs in a thread that could not be stopped (the process may exit anyway)."""
        return self._executor.threads_busy

    def stop(self) -> None:
        """Begin a graceful shutdown; a second call ends the grace period at once. Safe to repeat."""
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    async def run(self) -> None:
        """Register, run until ``stop()``, shut down gracefully. Raises if the database is unreachable at start."""
        route = await session_route(self._settings, "worker")
        if route.session_dsn is None:
            self._liveness.reroute(self._settings.require_dsn(), heartbeat_lease=self._settings.lease_seconds)
            self._producer.poll_only()
        else:
            self._liveness.reroute(route.session_dsn, heartbeat_lease=None)
            self._notifier = Notifier(
                route.session_dsn,
                [JOBS_CHANNEL, CANCEL_CHANNEL],
                self._on_notify,
                on_connect=self._listener_back,
                ping_seconds=self._settings.heartbeat_seconds,
            )
        worker_id = await self._liveness.open()
        log.info(
            "worker started",
            extra={"event": "worker_started", "worker_id": worker_id, "queues": list(self.config.queues)},
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._liveness.run())
                listener = None if self._notifier is None else group.create_task(self._notifier.run())
                completer = group.create_task(self._completer.run())
                executor = group.create_task(self._executor.run())
                producer = group.create_task(self._producer.run())
                watcher = group.create_task(self._watch_cancels())
                progress = group.create_task(self._progress.run())
                if any(task.executor == "process" for task in self._tasks):
                    group.create_task(self._warm_processes())
                await self._stop.wait()
                await self._shutdown(producer, executor, completer)
                watcher.cancel()
                progress.cancel()
                if self._notifier is not None and listener is not None:
                    self._notifier.stop()
                    listener.cancel()
                self._liveness.stop()
        finally:
            await self._store.close()
            await self._liveness.close()
        log.info("worker stopped", extra={"event": "worker_stopped", "worker_id": worker_id})

    # ---------------------------------------------------------------- internals
    def _lookup(self, name: str) -> Task:
        builtin = self._builtins.get(name)
        return builtin if builtin is not None else self._tasks.get(name)

    def _link_broken(self) -> None:
        self._executor.connection_broke()  # buffered claims may be lost: never started, handed back
        self._liveness.check_now()  # a crashed database stops new starts at once, not a heartbeat later

    def _wake_producer(self) -> None:
        self._producer.wake()

    def _listener_back(self) -> None:
        # A NOTIFY sent while the listener was away is lost, and the inserter that sent it took our waiting marks:
        # mark again (or no insert would ever notify us) and look for what came meanwhile, as after a NOTIFY.
        self._producer.notified()

    def _started_ids(self) -> list[int]:
        return self._executor.running_ids()

    async def _warm_processes(self) -> None:
        try:
            await self._processes.warm()
        except Exception as exc:  # a child that cannot start fails its job later, with the reason
            log.warning("process children not started", extra={"event": "children_start_failed", "error": str(exc)})

    def _attempt_lost(self, job_id: int, lease: int) -> None:
        self._executor.cancel_attempt(job_id, lease)

    def _liveness_changed(self) -> None:
        self._executor.connection_broke()  # lost, back or a new id: buffered claims may be lost or under an old id
        self._producer.forget_marks()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == JOBS_CHANNEL:
            if payload in self._queues:
                self._producer.notified()
        elif channel == CANCEL_CHANNEL and payload.isdigit():
            self._executor.cancel(int(payload))

    async def _watch_cancels(self) -> None:
        """The poll behind NOTIFY pgsched_cancel: running jobs with a pending cancel request."""
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                for job_id in await self._store.job_cancel_requested(self._executor.running_leases()):
                    self._executor.cancel(job_id)
            except PgschedError as exc:
                log.debug("cancel poll failed", extra={"event": "cancel_poll_failed", "error": str(exc)})

    async def _shutdown(
        self, producer: asyncio.Task[None], executor: asyncio.Task[None], completer: asyncio.Task[None]
    ) -> None:
        log.info("worker stopping", extra={"event": "worker_stopping", "grace": self.config.grace_seconds})
        self._producer.stop()
        await producer
        self._executor.release_buffered()
        if not await self._executor.wait_idle(self.config.grace_seconds, self._hurry):
            aborted = self._executor.abort_running()
            log.warning("grace period over", extra={"event": "jobs_aborted", "count": aborted})
            await self._executor.wait_idle(5.0)
        self._executor.close()
        await executor
        self._completer.close()
        await completer
        released = self._executor.take_released()
        if released:
            with contextlib.suppress(PgschedError):
                back = await self._store.job_release_leased(released)
                log.info("jobs handed back", extra={"event": "jobs_released", "count": len(back)})
